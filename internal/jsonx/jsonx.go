// Package jsonx appends JSON values to byte slices exactly as encoding/json encodes
// them (HTML-safe strings, RFC 3339 times, shortest floats), for the few hot paths that
// encode an event per message: there, encoding/json's reflection and its second pass
// over every json.RawMessage and time.Time cost more than the rest of the work. The
// tests hold the output byte-identical to encoding/json.
package jsonx

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string the way encoding/json does by default:
// quotes, backslashes and control characters escaped, <, > and & as \u003c, \u003e,
// \u0026, U+2028 and U+2029 escaped, and each invalid UTF-8 byte replaced by \ufffd.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	done := 0 // s[:done] is already in dst
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[done:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			done = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[done:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[done:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		done = i
	}
	dst = append(dst, s[done:]...)
	return append(dst, '"')
}

// AppendTime appends t as time.Time's MarshalJSON does: a quoted RFC 3339 time with
// nanoseconds as needed. Like encoding/json it fails for a year outside 0–9999.
func AppendTime(dst []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		return dst, fmt.Errorf("jsonx: time %v: year outside of range [0,9999]", t)
	}
	if _, off := t.Zone(); off%60 != 0 {
		// An offset with seconds is not RFC 3339; let time say how it handles it.
		b, err := t.MarshalJSON()
		if err != nil {
			return dst, err
		}
		return append(dst, b...), nil
	}
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"'), nil
}

// AppendFloat appends f as encoding/json encodes a float64: the shortest decimal that
// reads back the same, in exponent form below 1e-6 and from 1e21 on. NaN and
// infinities have no JSON form and fail, as they do in encoding/json.
func AppendFloat(dst []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, &json.UnsupportedValueError{Str: strconv.FormatFloat(f, 'g', -1, 64)}
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// encoding/json writes e-7, not e-07.
		if n := len(dst); n-start >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, nil
}

// AppendInt appends an integer.
func AppendInt(dst []byte, n int64) []byte { return strconv.AppendInt(dst, n, 10) }

// AppendUint appends an unsigned integer.
func AppendUint(dst []byte, n uint64) []byte { return strconv.AppendUint(dst, n, 10) }

// AppendRaw appends raw as encoding/json encodes a json.RawMessage: unchanged when it
// holds nothing encoding/json would rewrite (insignificant whitespace, and <, >, &,
// U+2028, U+2029, which it escapes), else through encoding/json; empty is null. raw must
// be valid JSON: this is for payloads that were validated or encoded before, and it
// does not check them again.
func AppendRaw(dst []byte, raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 {
		return append(dst, "null"...), nil
	}
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\n', '\r', '<', '>', '&', 0xe2: // 0xe2 starts U+2028 and U+2029
			b, err := json.Marshal(raw)
			if err != nil {
				return dst, err
			}
			return append(dst, b...), nil
		}
	}
	return append(dst, raw...), nil
}
