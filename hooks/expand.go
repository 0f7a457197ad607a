package hooks

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Sentinel errors of template expansion.
var (
	// ErrEmptyTemplate: the template is empty or only white space (the hook is disabled).
	ErrEmptyTemplate = errors.New("hooks: empty command template")
	// ErrSyntax: unbalanced quotes or braces, a trailing backslash, or a malformed
	// placeholder such as {} or {name:spec}.
	ErrSyntax = errors.New("hooks: malformed command template")
	// ErrUnknownPlaceholder: the template names a placeholder that has no value.
	ErrUnknownPlaceholder = errors.New("hooks: unknown placeholder")
)

// Disabled reports whether a hook template means "no hook", as SimpleTuner treats
// None, "" and "None".
func Disabled(template string) bool {
	t := strings.TrimSpace(template)
	return t == "" || t == "None"
}

// Split splits a command template into words the way a POSIX shell splits a simple command,
// without any expansion: blanks separate words, '…' quotes literally, "…" quotes with \ only
// escaping \ " $ and `, and an unquoted \ escapes the next character. Braces are not special
// here; an empty quoted word (two quote characters) is kept as an empty word.
func Split(template string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	rs := []rune(template)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case r == '\\':
			if i+1 >= len(rs) {
				return nil, fmt.Errorf("%w: trailing backslash", ErrSyntax)
			}
			i++
			if rs[i] != '\n' { // backslash-newline is a line continuation
				cur.WriteRune(rs[i])
			}
			inWord = true
		case r == '\'':
			end := indexRune(rs, i+1, '\'')
			if end < 0 {
				return nil, fmt.Errorf("%w: unterminated single quote", ErrSyntax)
			}
			cur.WriteString(string(rs[i+1 : end]))
			i = end
			inWord = true
		case r == '"':
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				if rs[j] == '\\' && j+1 < len(rs) && strings.ContainsRune("\\\"$`", rs[j+1]) {
					j++
				}
				cur.WriteRune(rs[j])
			}
			if j >= len(rs) {
				return nil, fmt.Errorf("%w: unterminated double quote", ErrSyntax)
			}
			i = j
			inWord = true
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func indexRune(rs []rune, from int, r rune) int {
	for i := from; i < len(rs); i++ {
		if rs[i] == r {
			return i
		}
	}
	return -1
}

// Placeholders returns the distinct placeholder names a template uses, sorted.
func Placeholders(template string) ([]string, error) {
	words, err := Split(template)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, w := range words {
		if _, err := substitute(w, func(name string) (string, bool) { seen[name] = true; return "", true }); err != nil {
			return nil, err
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// Expand turns a command template into argv: Split, then every {name} inside a word is
// replaced by values[name] ({{ and }} are literal braces, as in Python's str.format).
// A placeholder missing from values is an error wrapping ErrUnknownPlaceholder; an empty
// template wraps ErrEmptyTemplate. Values are inserted verbatim, never re-split or expanded.
func Expand(template string, values map[string]string) ([]string, error) {
	if Disabled(template) {
		return nil, ErrEmptyTemplate
	}
	words, err := Split(template)
	if err != nil {
		return nil, err
	}
	if len(words) == 0 {
		return nil, ErrEmptyTemplate
	}
	argv := make([]string, len(words))
	for i, w := range words {
		argv[i], err = substitute(w, func(name string) (string, bool) { v, ok := values[name]; return v, ok })
		if err != nil {
			return nil, err
		}
	}
	if argv[0] == "" {
		return nil, fmt.Errorf("%w: the command (first word) is empty", ErrSyntax)
	}
	return argv, nil
}

// substitute replaces the placeholders of one word using lookup.
func substitute(word string, lookup func(string) (string, bool)) (string, error) {
	var b strings.Builder
	for i := 0; i < len(word); i++ {
		c := word[i]
		switch c {
		case '{':
			if i+1 < len(word) && word[i+1] == '{' {
				b.WriteByte('{')
				i++
				continue
			}
			end := strings.IndexByte(word[i+1:], '}')
			if end < 0 {
				return "", fmt.Errorf("%w: unbalanced '{' in %q", ErrSyntax, word)
			}
			name := word[i+1 : i+1+end]
			if !isIdent(name) {
				return "", fmt.Errorf("%w: placeholder {%s} in %q: only {name} is supported", ErrSyntax, name, word)
			}
			v, ok := lookup(name)
			if !ok {
				return "", fmt.Errorf("%w: %q in script template", ErrUnknownPlaceholder, name)
			}
			b.WriteString(v)
			i += end + 1
		case '}':
			if i+1 < len(word) && word[i+1] == '}' {
				b.WriteByte('}')
				i++
				continue
			}
			return "", fmt.Errorf("%w: single '}' in %q", ErrSyntax, word)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		ok := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return true
}
