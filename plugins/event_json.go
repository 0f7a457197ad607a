package plugins

import (
	"simpletuner/internal/jsonx"
)

// AppendJSON appends the event's JSON, byte for byte what json.Marshal writes, without
// encoding/json's reflection and second pass over Time and Data: the spool and the
// daemon's event store encode one per event. Data must be valid JSON (as json.Marshal
// or the daemon's sanitiser leave it); it is not validated again.
func (e *Event) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"seq":`...)
	b = jsonx.AppendUint(b, e.Seq)
	b = append(b, `,"type":`...)
	b = jsonx.AppendString(b, e.Type)
	b = append(b, `,"severity":`...)
	b = jsonx.AppendString(b, e.Severity)
	b = append(b, `,"timestamp":`...)
	b, err := jsonx.AppendTime(b, e.Time)
	if err != nil {
		return b, err
	}
	if e.Title != "" {
		b = append(b, `,"title":`...)
		b = jsonx.AppendString(b, e.Title)
	}
	if e.Message != "" {
		b = append(b, `,"message":`...)
		b = jsonx.AppendString(b, e.Message)
	}
	if len(e.Data) > 0 {
		b = append(b, `,"data":`...)
		if b, err = jsonx.AppendRaw(b, e.Data); err != nil {
			return b, err
		}
	}
	return append(b, '}'), nil
}
