package datasets

import (
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"simpletuner/internal/errmsg"
	"strings"
)

// FormLimits bound a streamed form.
type FormLimits struct {
	// MaxParts caps the parts of a multipart body (default 10 000).
	MaxParts int
	// MaxFieldBytes caps one text field, and a whole urlencoded body (default 64 KiB).
	MaxFieldBytes int64
}

func (l FormLimits) withDefaults() FormLimits {
	if l.MaxParts == 0 {
		l.MaxParts = 10_000
	}
	if l.MaxFieldBytes == 0 {
		l.MaxFieldBytes = 64 << 10
	}
	return l
}

// FormHandler receives a form's parts in the order they arrive.
type FormHandler struct {
	// Field gets each text field.
	Field func(name, value string) error
	// File gets each file part; it may read as much of r as it wants (the rest is
	// skipped). Nil rejects file parts.
	File func(field, filename string, r io.Reader) error
}

// ReadForm streams a multipart/form-data or application/x-www-form-urlencoded body to h
// without buffering files (unlike ParseMultipartForm, nothing spools to a temp dir).
// Malformed bodies and exceeded limits are errors wrapping ErrInvalid; errors from h are
// returned as they are.
func ReadForm(contentType string, body io.Reader, lim FormLimits, h FormHandler) error {
	lim = lim.withDefaults()
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return errmsg.New(ErrInvalid, "Send the form as multipart/form-data (Content-Type is missing or malformed)")
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		data, err := io.ReadAll(io.LimitReader(body, lim.MaxFieldBytes+1))
		if err != nil {
			return err
		}
		if int64(len(data)) > lim.MaxFieldBytes {
			return errmsg.New(ErrInvalid, "Form too large (at most %d bytes urlencoded; send files as multipart/form-data)", lim.MaxFieldBytes)
		}
		vals, err := url.ParseQuery(string(data))
		if err != nil {
			return errmsg.New(ErrInvalid, "Malformed urlencoded form: %v", err)
		}
		for k, vs := range vals {
			for _, v := range vs {
				if err := h.Field(k, v); err != nil {
					return err
				}
			}
		}
		return nil
	case "multipart/form-data":
	default:
		return errmsg.New(ErrInvalid, "Send the form as multipart/form-data (got %s)", show(mt))
	}
	boundary := params["boundary"]
	if boundary == "" {
		return errmsg.New(ErrInvalid, "Malformed multipart body: no boundary in Content-Type")
	}
	mr := multipart.NewReader(body, boundary)
	for parts := 0; ; parts++ {
		if parts >= lim.MaxParts {
			return errmsg.New(ErrInvalid, "Too many form parts (at most %d)", lim.MaxParts)
		}
		p, err := mr.NextRawPart() // raw: no transparent quoted-printable decoding
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return formErr(err)
		}
		name := p.FormName()
		if name == "" {
			p.Close()
			continue // not a form field
		}
		if _, params, _ := mime.ParseMediaType(p.Header.Get("Content-Disposition")); params != nil {
			if _, isFile := params["filename"]; isFile {
				if h.File == nil {
					p.Close()
					return errmsg.New(ErrInvalid, "Unexpected file in field %s", show(name))
				}
				pr := &partReader{r: p}
				if err := h.File(name, p.FileName(), pr); err != nil {
					p.Close()
					if pr.err != nil && errors.Is(err, pr.err) {
						return formErr(err) // a truncated or malformed part, not the handler
					}
					return err
				}
				if err := p.Close(); err != nil {
					return formErr(err)
				}
				continue
			}
		}
		data, err := io.ReadAll(io.LimitReader(p, lim.MaxFieldBytes+1))
		p.Close()
		if err != nil {
			return formErr(err)
		}
		if int64(len(data)) > lim.MaxFieldBytes {
			return errmsg.New(ErrInvalid, "Form field %s is too long (at most %d bytes)", show(name), lim.MaxFieldBytes)
		}
		if err := h.Field(name, strings.TrimSuffix(string(data), "\r")); err != nil {
			return err
		}
	}
}

// partReader remembers the error reading a part returned, so ReadForm can tell a
// malformed body from a failure of the handler.
type partReader struct {
	r   io.Reader
	err error
}

func (p *partReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if err != nil && err != io.EOF && p.err == nil {
		p.err = err
	}
	return n, err
}

// formErr turns a parse error into ErrInvalid. A failure of the body itself (its cap,
// a broken connection) also surfaces here; callers that need to tell the two apart
// record the body's read error (the API does, to answer 413 at the cap).
func formErr(err error) error {
	return errmsg.New(ErrInvalid, "Malformed multipart body: %v", err)
}
