// Package jsondoc reads and writes the JSON documents that come from outside the daemon
// (request bodies, configuration files a client saves) with the limits such documents
// need: nesting is capped before any decoder runs, exactly one document is accepted,
// and the indented form written to disk grows by a bounded factor however deeply a
// value nests (docs/security.md, nesting amplification).
package jsondoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// MaxDepth is the deepest nesting of arrays and objects a document may have. Real
// configurations nest three or four levels; 32 leaves room for any of them and refuses
// the thousands-deep values that cost decoders, encoders and every later reader time and
// memory out of all proportion to their size.
const MaxDepth = 32

var (
	// ErrTooDeep: arrays and objects nest deeper than MaxDepth.
	ErrTooDeep = errors.New("JSON nests too deeply")
	// ErrTrailing: something other than whitespace follows the document.
	ErrTrailing = errors.New("extra data after the JSON document")
)

// CheckDepth returns an error wrapping ErrTooDeep when arrays and objects in data nest
// deeper than max. It counts brackets outside strings in one pass without allocating,
// so it is safe to run on untrusted bytes before a decoder; syntax is left to the
// decoder that runs after it.
func CheckDepth(data []byte, max int) error {
	depth := 0
	var lit literal
	for i, c := range data {
		if lit.holds(c) {
			continue
		}
		switch c {
		case '[', '{':
			depth++
			if depth > max {
				return fmt.Errorf("%w: more than %d levels of arrays and objects inside each other (at byte %d)", ErrTooDeep, max, i)
			}
		case ']', '}':
			depth--
		}
	}
	return nil
}

// Decode decodes the one JSON document in data into v: nesting is capped at MaxDepth
// (ErrTooDeep) and only whitespace may follow the document (ErrTrailing). Other errors
// are encoding/json's (*json.SyntaxError, *json.UnmarshalTypeError; io.EOF for no
// document at all).
func Decode(data []byte, v any) error { return decode(data, v, false) }

// DecodeNumbers is Decode keeping numbers as written (json.Number), so a stored "1e-4"
// or a 20-digit seed survives a load and save unchanged.
func DecodeNumbers(data []byte, v any) error { return decode(data, v, true) }

func decode(data []byte, v any, numbers bool) error {
	if err := CheckDepth(data, MaxDepth); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if numbers {
		dec.UseNumber()
	}
	if err := dec.Decode(v); err != nil {
		return err
	}
	end := dec.InputOffset()
	if rest := bytes.TrimLeft(data[end:], " \t\r\n"); len(rest) > 0 {
		return fmt.Errorf("%w (at byte %d): send exactly one JSON value", ErrTrailing, int64(len(data)-len(rest)))
	}
	return nil
}
