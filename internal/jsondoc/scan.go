package jsondoc

// literal follows a byte-by-byte scan of JSON text through its string literals, so that
// the scanners of this package (the depth check, the indenter) see brackets, commas and
// colons only where they are syntax.
type literal struct{ in, escaped bool }

// holds reports whether c, the next byte of the text, belongs to a string literal
// (its quotes included), and moves the state past it.
func (l *literal) holds(c byte) bool {
	switch {
	case l.escaped:
		l.escaped = false
	case !l.in:
		l.in = c == '"'
		return l.in
	case c == '\\':
		l.escaped = true
	case c == '"':
		l.in = false
	}
	return true
}
