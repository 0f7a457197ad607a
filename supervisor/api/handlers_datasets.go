package api

import (
	"errors"
	"io"
	"net/http"

	"simpletuner/options"
	"simpletuner/supervisor/auth"
	"simpletuner/supervisor/datasets"
)

var (
	folderForm = []formField{
		{name: "parent_path", help: "folder to create it in: relative to the datasets directory, or absolute inside it (empty: the datasets directory)"},
		{name: "folder_name", help: "the new folder's name", required: true},
	}
	uploadForm = []formField{
		{name: "target_path", help: "destination folder; must come before the files", required: true},
		{name: "overwrite", help: "true replaces existing files of the same name (default false: they are reported and skipped); needs dataset.overwrite (lead and admin)"},
		{name: "files", help: "files to upload (also accepted as files[])", file: true, many: true},
		{name: "files[]", help: "the tutorial's spelling of files", file: true, many: true},
	}
	zipForm = []formField{
		{name: "target_path", help: "destination folder; must come before the file", required: true},
		{name: "file", help: "the .zip archive", file: true, required: true},
	}
)

// withDatasets answers 503 when the server runs without the datasets service.
func (s *Server) withDatasets(h handlerFunc) handlerFunc {
	return requires(func() bool { return s.cfg.Datasets != nil }, "Dataset uploads are", h)
}

// bodyErr remembers the first error reading the request body returned, so a body cap
// (*http.MaxBytesError) or a broken connection is answered as such even when the
// multipart parser reports it as a malformed body.
type bodyErr struct {
	r   io.Reader
	err error
}

func (b *bodyErr) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// streamForm streams the request's form to h; see datasets.ReadForm.
func streamForm(r *http.Request, h datasets.FormHandler) error {
	body := &bodyErr{r: r.Body}
	err := datasets.ReadForm(r.Header.Get("Content-Type"), body, datasets.FormLimits{}, h)
	if err != nil && body.err != nil {
		return body.err
	}
	return err
}

func missingField(name string) error {
	return &validationError{fieldError{Type: "missing", Loc: []string{"body", name}, Msg: "Field required"}}
}

func (s *Server) createFolder(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	svc := s.cfg.Datasets
	var parent, name string
	var hasName bool
	err := streamForm(r, datasets.FormHandler{Field: func(k, v string) error {
		switch k {
		case "parent_path":
			parent = v
		case "folder_name":
			name, hasName = v, true
		}
		return nil
	}})
	if err != nil {
		return err
	}
	if !hasName {
		return missingField("folder_name")
	}
	out, err := svc.CreateFolder(parent, name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// uploadState collects the fields of an upload form as they stream in.
type uploadState struct {
	svc       *datasets.Service
	p         *auth.Principal
	target    *datasets.Target
	hasTarget bool
	overwrite bool
}

func (u *uploadState) field(k, v string) error {
	switch k {
	case "target_path":
		if u.hasTarget {
			return errorf(http.StatusBadRequest, "target_path is given more than once")
		}
		t, err := u.svc.OpenTarget(v)
		if err != nil {
			return err
		}
		u.target, u.hasTarget = t, true
	case "overwrite":
		b, err := options.ParseBool(v)
		if err != nil {
			return &validationError{fieldError{Type: "bool_parsing", Loc: []string{"body", "overwrite"}, Msg: "must be true or false"}}
		}
		if b && !u.p.Can(auth.PermDatasetOverwrite) {
			// Files record no uploader, so replacing one may replace another user's work.
			return errorf(http.StatusForbidden, "Permission denied: %s (existing files can only be replaced by a lead or an administrator; upload without overwrite, or under a new name)", auth.PermDatasetOverwrite)
		}
		u.overwrite = b
	}
	return nil
}

func (u *uploadState) close() {
	if u.target != nil {
		u.target.Close()
	}
}

func (s *Server) uploadFiles(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	svc := s.cfg.Datasets
	u := &uploadState{svc: svc, p: p}
	defer u.close()
	res := datasets.UploadResult{Errors: []string{}}
	files := 0
	err := streamForm(r, datasets.FormHandler{Field: u.field, File: func(field, filename string, part io.Reader) error {
		if field != "files" && field != "files[]" {
			return nil // unknown file fields are skipped, as FastAPI ignores them
		}
		files++
		if u.target == nil {
			return errorf(http.StatusBadRequest, "Send target_path before the files (curl: put -F target_path=… first)")
		}
		err := u.target.Save(filename, part, u.overwrite)
		switch {
		case errors.Is(err, datasets.ErrSkipped):
			res.Note(err.Error())
		case err != nil:
			return err
		default:
			res.FilesUploaded++
		}
		return nil
	}})
	if err != nil {
		return err
	}
	if !u.hasTarget {
		return missingField("target_path")
	}
	if files == 0 {
		return missingField("files")
	}
	res.TargetPath = u.target.Path()
	res.Success = res.FilesUploaded > 0
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) uploadZip(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	svc := s.cfg.Datasets
	var target string
	var hasTarget bool
	var res *datasets.UploadResult
	err := streamForm(r, datasets.FormHandler{
		Field: func(k, v string) error {
			if k == "target_path" {
				target, hasTarget = v, true
			}
			return nil
		},
		File: func(field, filename string, part io.Reader) error {
			if field != "file" {
				return nil
			}
			if res != nil {
				return errorf(http.StatusBadRequest, "Send one archive per request")
			}
			if !hasTarget {
				return errorf(http.StatusBadRequest, "Send target_path before the file (curl: put -F target_path=… first)")
			}
			out, err := svc.ExtractZip(target, filename, part)
			if err != nil {
				return err
			}
			res = out
			return nil
		}})
	if err != nil {
		return err
	}
	if !hasTarget {
		return missingField("target_path")
	}
	if res == nil {
		return missingField("file")
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) browseDatasets(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	svc := s.cfg.Datasets
	out, err := svc.Browse(r.URL.Query().Get("path"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
