package api

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDecodeJSONRefusesWhatIsNotOneShallowDocument(t *testing.T) {
	tests := []struct {
		body, typ, msg string // typ "" = accepted
	}{
		{`{"name":"a"}`, "", ""},
		{"{\"name\":\"a\"}\r\n \t", "", ""},
		{`{"name":"a"} {"name":"b"}`, "json_invalid", "extra data after the JSON document (at byte 13)"},
		{`{"name":"a"}xyz`, "json_invalid", "extra data after the JSON document"},
		{`{"name":"a"}}`, "json_invalid", "extra data after the JSON document"},
		{`{"x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, "json_too_deep", "more than 32 levels of arrays and objects"},
		{`{"name":5}`, "type_error", "expected string"},
		{``, "missing", "Field required"},
		{`{"name":`, "json_invalid", "JSON decode error"},
	}
	for _, tc := range tests {
		r := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
		r.Header.Set("Content-Type", "application/json")
		var v struct {
			Name string `json:"name"`
		}
		err := decodeJSON(r, &v)
		var ve *validationError
		switch {
		case tc.typ == "" && err != nil:
			t.Errorf("%q: %v", tc.body, err)
		case tc.typ == "":
		case !errors.As(err, &ve) || ve.fe.Type != tc.typ || !strings.Contains(ve.fe.Msg, tc.msg):
			t.Errorf("%q: %#v, want a 422 %s with %q", tc.body, err, tc.typ, tc.msg)
		}
	}
}
