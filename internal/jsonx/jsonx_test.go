package jsonx

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

func sameAsJSON(t *testing.T, v any, got []byte, err error) {
	t.Helper()
	want, werr := json.Marshal(v)
	if (err != nil) != (werr != nil) {
		t.Fatalf("%#v: error %v, encoding/json: %v", v, err, werr)
	}
	if err == nil && string(got) != string(want) {
		t.Fatalf("%#v:\n got %s\nwant %s", v, got, want)
	}
}

func TestStringLikeEncodingJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " backslash \ slash /`, "<script>&amp;</script>", "\x00\x01\x1f\x7f",
		"\b\f\n\r\t", "caf\u00e9 \u2028 \u2029 \U0001F600", "bad \xff utf8 \xc3", "\xed\xa0\x80", "st_secret",
	} {
		sameAsJSON(t, s, AppendString(nil, s), nil)
	}
}

func TestTimeLikeEncodingJSON(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2026, 11, 27, 23, 1, 2, 941502429, time.UTC),
		time.Date(2026, 11, 27, 23, 1, 2, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 100, time.FixedZone("x", 9*3600)),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("odd", 3600+7)),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		{},
	} {
		got, err := AppendTime(nil, tm)
		sameAsJSON(t, tm, got, err)
	}
}

func TestFloatLikeEncodingJSON(t *testing.T) {
	for _, f := range []float64{
		0, math.Copysign(0, -1), 1, -1.5, 0.1, 1e-6, 9.99e-7, 1e-7, 1.234e-10, 1e20, 1e21, 1.5e300,
		math.MaxFloat64, math.SmallestNonzeroFloat64, 123456789.125, 1e-4, math.NaN(), math.Inf(1), math.Inf(-1),
	} {
		got, err := AppendFloat(nil, f)
		sameAsJSON(t, f, got, err)
	}
}

func FuzzStringLikeEncodingJSON(f *testing.F) {
	f.Add("a<b>&\"\\\n\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) {
		sameAsJSON(t, s, AppendString([]byte("x"), s)[1:], nil)
	})
}

func FuzzFloatLikeEncodingJSON(f *testing.F) {
	f.Add(1.5e-7)
	f.Fuzz(func(t *testing.T, v float64) {
		got, err := AppendFloat(nil, v)
		sameAsJSON(t, v, got, err)
	})
}

func TestRawLikeEncodingJSON(t *testing.T) {
	for _, raw := range []string{
		`{"a":1}`, `{"a": 1}`, "{\n\"a\":\t1}", `{"s":"<b>&"}`, `{"s":"` + "\u2028" + `"}`, `{"s":"é"}`, `[1,2]`, `"x"`, `null`,
	} {
		got, err := AppendRaw(nil, json.RawMessage(raw))
		sameAsJSON(t, json.RawMessage(raw), got, err)
	}
	if got, _ := AppendRaw(nil, nil); string(got) != "null" {
		t.Fatalf("empty: %s", got)
	}
}
