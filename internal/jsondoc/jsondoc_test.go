package jsondoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

func deep(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

func TestCheckDepth(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		deep bool
	}{
		{`{"a":[1,{"b":2}]}`, 3, false},
		{`{"a":[1,{"b":2}]}`, 2, true},
		{deep(32), 32, false},
		{deep(33), 32, true},
		{`"[[[[[[[["`, 1, false},                 // brackets in a string do not count
		{`["\"[[[[", "\\", {"x":[]}]`, 3, false}, // nor after escaped quotes and backslashes
		{`["\"[[[[", "\\", {"x":[[]]}]`, 3, true},
		{`]]]][[`, 2, false}, // malformed: left to the decoder
		{``, 1, false},
	}
	for _, tc := range tests {
		err := CheckDepth([]byte(tc.in), tc.max)
		if got := errors.Is(err, ErrTooDeep); got != tc.deep {
			t.Errorf("CheckDepth(%q, %d) = %v, want too deep %v", tc.in, tc.max, err, tc.deep)
		}
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		in   string
		want error // nil, ErrTooDeep, ErrTrailing, io.EOF, or errSyntax
	}{
		{`{"a":1}`, nil},
		{"  {\"a\":1} \r\n\t ", nil},
		{`{"a":1} {"b":2}`, ErrTrailing},
		{`{"a":1}xyz`, ErrTrailing},
		{`{"a":1}}`, ErrTrailing},
		{`{"a":1}]`, ErrTrailing},
		{`{"a":1},`, ErrTrailing},
		{`{"a":1}` + "\x00", ErrTrailing},
		{`{"a":` + deep(32) + `}`, ErrTooDeep},
		{`{"a":` + deep(31) + `}`, nil},
		{``, io.EOF},
		{`   `, io.EOF},
		{`{"a":`, errSyntax},
	}
	for _, tc := range tests {
		var v any
		err := Decode([]byte(tc.in), &v)
		switch {
		case tc.want == errSyntax:
			if err == nil || errors.Is(err, ErrTrailing) || errors.Is(err, ErrTooDeep) {
				t.Errorf("Decode(%q) = %v, want a syntax error", tc.in, err)
			}
		case !errors.Is(err, tc.want) || (tc.want == nil && err != nil):
			t.Errorf("Decode(%q) = %v, want %v", tc.in, err, tc.want)
		}
	}
}

var errSyntax = errors.New("syntax")

func TestDecodeNumbersKeepsNumbersAsWritten(t *testing.T) {
	var v map[string]any
	if err := DecodeNumbers([]byte(`{"lr":1e-4,"seed":12345678901234567890}`), &v); err != nil {
		t.Fatal(err)
	}
	if v["lr"] != json.Number("1e-4") || v["seed"] != json.Number("12345678901234567890") {
		t.Errorf("numbers = %#v", v)
	}
	var plain map[string]any
	if err := Decode([]byte(`{"lr":1e-4}`), &plain); err != nil || plain["lr"] != 1e-4 {
		t.Errorf("Decode numbers = %#v, %v", plain, err)
	}
}

func TestIndentMatchesJSONIndentWithinTheLevels(t *testing.T) {
	for _, src := range []string{
		`{}`, `[]`, `{"a":1}`, `{"a":[],"b":{},"c":[1,2,{"d":"x,y:[z]"}]}`,
		`[{"id":"a","x":{"y":["\"]","\\"]}},{"id":"b"}]`, `"just a string"`, `42`,
	} {
		var want bytes.Buffer
		if err := json.Indent(&want, []byte(src), "", "  "); err != nil {
			t.Fatal(err)
		}
		if got := Indent(nil, []byte(src), 10); string(got) != want.String() {
			t.Errorf("Indent(%s):\n%s\nwant\n%s", src, got, want.String())
		}
	}
}

func TestIndentKeepsDeeperLevelsCompact(t *testing.T) {
	got := string(Indent(nil, []byte(`{"a":{"b":{"c":{"d":[1,2]}}},"e":[]}`), 2))
	want := "{\n  \"a\": {\n    \"b\": {\"c\":{\"d\":[1,2]}}\n  },\n  \"e\": []\n}"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestMarshalGrowthIsBounded is the 162 MB config.json: an array nested 9,000 deep is
// written about as large as it is, not with 2 bytes of indent a level on every line.
func TestMarshalGrowthIsBounded(t *testing.T) {
	var v any
	dec := json.NewDecoder(strings.NewReader(`{"--x":` + deep(9000) + `}`))
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) > 20_000 {
		t.Errorf("Marshal of an 18 KB document: %d bytes", len(out))
	}
}

func TestMarshalFormat(t *testing.T) {
	out, err := Marshal(map[string]any{"--b": "<token> & co", "--a": []any{map[string]any{"k": []any{1, []any{2}}}}})
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"--a\": [\n    {\n      \"k\": [1,[2]]\n    }\n  ],\n  \"--b\": \"<token> & co\"\n}\n"
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}
