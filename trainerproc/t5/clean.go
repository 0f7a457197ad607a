package t5

import (
	"html"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Character classes spelled the way Python 3's re module reads \w, \d and \s in a str
// pattern (Unicode letters, numbers and whitespace), which RE2 reads as ASCII only.
const (
	pyWord  = `\p{L}\p{N}_`
	pyDigit = `\p{Nd}`
	pySpace = `\t\n\v\f\r\x{1c}-\x{1f}\x{85}\p{Z}`
)

// py compiles a pattern written with Python's shorthands \w \d \s (inside or outside a
// bracket expression) and \S \D (outside one, or as the whole of "[\S]"), expanding them
// into the Unicode classes above. Word boundaries (\b) stay RE2's, which are ASCII: see
// CleanCaption.
func py(pattern string) *regexp.Regexp {
	pattern = strings.ReplaceAll(pattern, `[\S]`, `\S`)
	var b strings.Builder
	inClass := false
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		if c != '\\' || i+1 == len(pattern) {
			switch c {
			case '[':
				inClass = true
			case ']':
				inClass = false
			}
			b.WriteByte(c)
			continue
		}
		i++
		class, negated := "", false
		switch pattern[i] {
		case 'w':
			class = pyWord
		case 'd':
			class = pyDigit
		case 's':
			class = pySpace
		case 'S':
			class, negated = pySpace, true
		case 'D':
			class, negated = pyDigit, true
		default:
			b.WriteByte('\\')
			b.WriteByte(pattern[i])
			continue
		}
		switch {
		case inClass && !negated:
			b.WriteString(class)
		case inClass:
			panic("t5: negated class inside a bracket expression: " + pattern)
		case negated:
			b.WriteString("[^" + class + "]")
		default:
			b.WriteString("[" + class + "]")
		}
	}
	return regexp.MustCompile(b.String())
}

// cleanStep is one substitution of the caption cleaning.
type cleanStep struct {
	re   *regexp.Regexp
	repl string
}

// The URL patterns of the reference end in a negative lookahead (?!@) after the domain
// alternative, which RE2 lacks; cleanURLs applies it by hand. Group 1 is the scheme
// alternative, group 2 the domain one.
var (
	urlScheme = py(`\b(?:(https?:(?:/{1,3}|[a-zA-Z0-9%]))|([a-zA-Z0-9.\-]+[.](?:com|co|ru|net|org|edu|gov|it)[\w/-]*\b/?))`)
	urlWWW    = py(`\b(?:(www:(?:/{1,3}|[a-zA-Z0-9%]))|([a-zA-Z0-9.\-]+[.](?:com|co|ru|net|org|edu|gov|it)[\w/-]*\b/?))`)
)

// Read-only tables of compiled patterns, in the order the reference applies them.
var (
	// cleanBeforeUnescape runs after the URLs are removed (HTML tag stripping, which needs an
	// HTML parser in the reference, is left out).
	cleanBeforeUnescape = []cleanStep{
		{py(`@[\w\d]+\b`), ""}, // @nickname
		// CJK strokes, katakana extensions, enclosed CJK, CJK compatibility, CJK ideographs
		// (extension A and unified) and Yijing hexagrams.
		{regexp.MustCompile(`[\x{31c0}-\x{31ef}\x{31f0}-\x{31ff}\x{3200}-\x{32ff}\x{3300}-\x{33ff}\x{3400}-\x{4dbf}\x{4dc0}-\x{4dff}\x{4e00}-\x{9fff}]+`), ""},
		// Every kind of dash, a run of them becoming one "-".
		{regexp.MustCompile(`[\x{2d}\x{58a}\x{5be}\x{1400}\x{1806}\x{2010}-\x{2015}\x{2e17}\x{2e1a}\x{2e3a}\x{2e3b}\x{2e40}\x{301c}\x{3030}\x{30a0}\x{fe31}\x{fe32}\x{fe58}\x{fe63}\x{ff0d}]+`), "-"},
		{regexp.MustCompile("[`´«»“”¨]"), `"`},
		{regexp.MustCompile(`[‘’]`), "'"},
		{regexp.MustCompile(`&quot;?`), ""},
		{regexp.MustCompile(`&amp`), ""},
		{py(`\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}`), " "}, // IP addresses
		{py(`\d:\d\d\s+$`), ""},                         // article ids
		{regexp.MustCompile(`\\n`), " "},                // a literal backslash-n
		{py(`#\d{1,3}\b`), ""},
		{py(`#\d{5,}\b`), ""},
		{py(`\b\d{6,}\b`), ""},
		{py(`[\S]+\.(?:png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4)`), ""}, // file names
		{regexp.MustCompile(`["']{2,}`), `"`},
		{regexp.MustCompile(`[.]{2,}`), " "},
		{regexp.MustCompile(`[#®•©™&@·º½¾¿¡§~)(\]\[}{|\\/*]+`), " "}, // runs of bad punctuation
		{py(`\s+\.\s+`), " "},
	}
	// dashesAndUnderscores are split into spaces when a caption has more than three of them
	// (this-is-my-cute-cat).
	dashesAndUnderscores = regexp.MustCompile(`[-_]`)
	// cleanAfterUnescape runs after the double HTML unescape (the reference repairs mojibake
	// with ftfy just before it; that is left out).
	cleanAfterUnescape = []cleanStep{
		{py(`\b[a-zA-Z]{1,3}\d{3,15}\b`), ""},                                 // jc6640
		{py(`\b[a-zA-Z]+\d+[a-zA-Z]+\b`), ""},                                 // jc6640vc
		{py(`\b\d+[a-zA-Z]+\d+\b`), ""},                                       // 6640vc231
		{py(`(worldwide\s+)?(free\s+)?shipping`), ""},                         // spam
		{py(`(free\s)?download(\sfree)?`), ""},                                //
		{py(`\bclick\b\s(?:for|on)\s\w+`), ""},                                //
		{py(`\b(?:png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4)(\simage[s]?)?`), ""}, //
		{py(`\bpage\s+\d+\b`), ""},                                            //
		{py(`\b\d*[a-zA-Z]+\d+[a-zA-Z]+\d+[a-zA-Z\d]*\b`), " "},               // j2d1a2a...
		{py(`\b\d+\.?\d*[xх×]\d+\.?\d*\b`), ""},                               // sizes 1920x1080
		{py(`\b\s+:\s+`), ": "},                                               //
		{py(`(\D[,./])\b`), "$1 "},                                            // a space after punctuation
		{py(`\s+`), " "},                                                      // whitespace collapse
		{regexp.MustCompile(`^["']((?s:.+))["']$`), "$1"},                     // surrounding quotes
		{regexp.MustCompile(`^['_,\-:;]`), ""},                                //
		{regexp.MustCompile(`['_,\-:+]$`), ""},                                //
		{py(`^\.\S+$`), ""},                                                   //
	}
)

// CleanCaption is one pass of the caption cleaning PixArt's pipeline applies with
// clean_caption=True (DeepFloyd IF's, which the pipeline runs twice: see PixArtPrompt). In
// order: URL-unquote ('+' and %XX), strip and lower-case, "<person>" → "person", URLs,
// @nicknames, CJK ideograph ranges, dashes → "-", typographic quotes → '"' and "'",
// "&quot" and "&amp", IP addresses, article ids, literal "\n", "#123"-style numbers and long
// digit runs, file names, repeated quotes and dots, runs of bad punctuation, lone dots,
// dash/underscore-separated words, a double HTML unescape, product codes, shipping and
// download spam, sizes like 1920x1080, spacing after punctuation, whitespace collapse,
// surrounding quotes and leading/trailing stray punctuation, then a final strip.
//
// Left out, because they need libraries the reference imports: HTML tag stripping
// (BeautifulSoup; entities are still decoded by the unescape step) and mojibake repair
// (ftfy). Also different: RE2 has no lookahead, so the URL patterns' "not followed by @"
// leaves a domain-like word followed by "@" in place where the reference would try shorter
// matches, and RE2's word boundaries (\b) are ASCII-only where Python's are Unicode (\w, \d
// and \s are spelled as Python's Unicode classes).
func CleanCaption(caption string) string {
	caption = unquotePlus(caption)
	caption = strings.ToLower(strings.TrimSpace(caption))
	caption = strings.ReplaceAll(caption, "<person>", "person")
	caption = cleanURLs(urlScheme, caption)
	caption = cleanURLs(urlWWW, caption)
	for _, s := range cleanBeforeUnescape {
		caption = s.re.ReplaceAllString(caption, s.repl)
	}
	if len(dashesAndUnderscores.FindAllStringIndex(caption, 4)) > 3 {
		caption = dashesAndUnderscores.ReplaceAllString(caption, " ")
	}
	caption = html.UnescapeString(html.UnescapeString(caption))
	for _, s := range cleanAfterUnescape {
		caption = s.re.ReplaceAllString(caption, s.repl)
	}
	return strings.TrimSpace(caption)
}

// PixArtPrompt prepares a caption the way PixArt's pipeline does before tokenizing: with
// clean, CleanCaption twice; without, only lower-casing and stripping.
func PixArtPrompt(caption string, clean bool) string {
	if clean {
		return CleanCaption(CleanCaption(caption))
	}
	return strings.TrimSpace(strings.ToLower(caption))
}

// cleanURLs removes the matches of a URL pattern, except a domain match directly followed
// by "@" (the reference's negative lookahead).
func cleanURLs(re *regexp.Regexp, s string) string {
	var b strings.Builder
	last := 0
	for _, m := range re.FindAllStringSubmatchIndex(s, -1) {
		if m[4] >= 0 && m[1] < len(s) && s[m[1]] == '@' {
			continue
		}
		b.WriteString(s[last:m[0]])
		last = m[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

// unquotePlus decodes '+' as a space and %XX escapes as bytes, leaving malformed escapes as
// they are; byte runs that are not UTF-8 become U+FFFD, as Python's unquote_plus does.
func unquotePlus(s string) string {
	if !strings.ContainsAny(s, "+%") {
		return s
	}
	var b []byte
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
