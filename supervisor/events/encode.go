package events

import (
	"encoding/json"

	"simpletuner/internal/jsonx"
)

// appendJSON appends the event as json.Marshal writes it (the tests hold the two
// byte-identical). Every event is encoded once when published; doing it without
// reflection and without encoding/json's second pass over Timestamp and Data keeps that
// off the ingestion path's profile. The rarer parts (stage, checkpoint, validation,
// images, metrics) go through encoding/json.
func (e *Event) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = jsonx.AppendString(b, e.ID)
	b = append(b, `,"index":`...)
	b = jsonx.AppendUint(b, e.Index)
	b = append(b, `,"seq":`...)
	b = jsonx.AppendUint(b, e.Seq)
	b = append(b, `,"job_id":`...)
	b = jsonx.AppendString(b, e.JobID)
	b = append(b, `,"type":`...)
	b = jsonx.AppendString(b, e.Type)
	b = append(b, `,"severity":`...)
	b = jsonx.AppendString(b, e.Severity)
	b = append(b, `,"timestamp":`...)
	b, err := jsonx.AppendTime(b, e.Timestamp)
	if err != nil {
		return b, err
	}
	b = append(b, `,"title":`...)
	b = jsonx.AppendString(b, e.Title)
	b = append(b, `,"message":`...)
	b = jsonx.AppendString(b, e.Message)
	if e.Progress != nil {
		b = append(b, `,"progress":`...)
		if b, err = e.Progress.appendJSON(b); err != nil {
			return b, err
		}
	}
	for _, part := range []struct {
		key string
		v   any
		set bool
	}{
		{`,"stage":`, e.Stage, e.Stage != nil},
		{`,"checkpoint":`, e.Checkpoint, e.Checkpoint != nil},
		{`,"validation":`, e.Validation, e.Validation != nil},
		{`,"images":`, e.Images, len(e.Images) > 0},
	} {
		if !part.set {
			continue
		}
		enc, err := json.Marshal(part.v)
		if err != nil {
			return b, err
		}
		b = append(b, part.key...)
		b = append(b, enc...)
	}
	if len(e.Data) > 0 {
		b = append(b, `,"data":`...)
		if b, err = jsonx.AppendRaw(b, e.Data); err != nil {
			return b, err
		}
	}
	return append(b, '}'), nil
}

// appendJSON appends the progress as json.Marshal writes it.
func (p *Progress) appendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, '{')
	if p.Label != "" {
		b = append(b, `"label":`...)
		b = jsonx.AppendString(b, p.Label)
		b = append(b, ',')
	}
	b = append(b, `"current":`...)
	b = jsonx.AppendInt(b, p.Current)
	b = append(b, `,"total":`...)
	b = jsonx.AppendInt(b, p.Total)
	b = append(b, `,"percent":`...)
	if b, err = jsonx.AppendFloat(b, p.Percent); err != nil {
		return b, err
	}
	b = append(b, `,"eta_seconds":`...)
	if p.ETASeconds == nil {
		b = append(b, "null"...)
	} else if b, err = jsonx.AppendFloat(b, *p.ETASeconds); err != nil {
		return b, err
	}
	if p.Epoch != 0 {
		b = append(b, `,"epoch":`...)
		b = jsonx.AppendInt(b, p.Epoch)
	}
	if p.TotalEpochs != 0 {
		b = append(b, `,"total_epochs":`...)
		b = jsonx.AppendInt(b, p.TotalEpochs)
	}
	if p.Loss != nil {
		b = append(b, `,"loss":`...)
		if b, err = jsonx.AppendFloat(b, *p.Loss); err != nil {
			return b, err
		}
	}
	if p.LearningRate != nil {
		b = append(b, `,"learning_rate":`...)
		if b, err = jsonx.AppendFloat(b, *p.LearningRate); err != nil {
			return b, err
		}
	}
	if len(p.Metrics) > 0 {
		enc, err := json.Marshal(p.Metrics)
		if err != nil {
			return b, err
		}
		b = append(b, `,"metrics":`...)
		b = append(b, enc...)
	}
	return append(b, '}'), nil
}
