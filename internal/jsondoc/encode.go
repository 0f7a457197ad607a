package jsondoc

import (
	"bytes"
	"encoding/json"
)

// IndentLevels is how many levels of arrays and objects Marshal lays out one member a
// line: a configuration's options, a dataloader's datasets and their keys, and one level
// inside those. Anything nested deeper stays compact.
const IndentLevels = 3

// Marshal encodes v the way configuration files are written: sorted keys, HTML left
// unescaped (so "<token>" stays readable), two-space indent for the members of the top
// IndentLevels levels, deeper values compact, and a trailing newline.
func Marshal(v any) ([]byte, error) {
	src, err := Compact(v)
	if err != nil {
		return nil, err
	}
	out := Indent(make([]byte, 0, len(src)+len(src)/4+1), src, IndentLevels)
	return append(out, '\n'), nil
}

// Compact encodes v on one line: sorted keys, HTML left unescaped (so "<token>" stays
// readable), no trailing newline.
func Compact(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Indent appends compact JSON src to dst with the members of its top levels levels of
// arrays and objects on their own lines, indented two spaces a level, and deeper values
// left compact. json.Indent indents every level, which costs two bytes a level on every
// line: an 18 KB array nested 9,000 deep became 162 MB. With the levels bounded, each
// byte of src grows into a bounded number of bytes. src must be compact (as
// json.Marshal writes it): whitespace outside strings is dropped.
func Indent(dst, src []byte, levels int) []byte {
	newline := func(depth int) {
		dst = append(dst, '\n')
		for range depth {
			dst = append(dst, ' ', ' ')
		}
	}
	depth := 0
	var lit literal
	for i, c := range src {
		if lit.holds(c) {
			dst = append(dst, c)
			continue
		}
		switch c {
		case ' ', '\t', '\r', '\n':
		case '[', '{':
			dst = append(dst, c)
			depth++
			if depth <= levels && i+1 < len(src) && src[i+1] != ']' && src[i+1] != '}' {
				newline(depth)
			}
		case ']', '}':
			if depth <= levels && i > 0 && src[i-1] != '[' && src[i-1] != '{' {
				newline(depth - 1)
			}
			depth--
			dst = append(dst, c)
		case ',':
			dst = append(dst, c)
			if depth <= levels {
				newline(depth)
			}
		case ':':
			dst = append(dst, c)
			if depth <= levels {
				dst = append(dst, ' ')
			}
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
