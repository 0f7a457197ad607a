package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"simpletuner/internal/jsondoc"
	"simpletuner/options"
	"simpletuner/supervisor/auth"
	"simpletuner/supervisor/configs"
	"simpletuner/supervisor/webhooks"
)

// Permissions of the configuration routes (levels in auth.Levels). Environments carry
// no owner yet, so the ".own" permissions are the floor for every environment.
const (
	permConfigView   = "config.view"
	permConfigCreate = "config.create"
	permConfigEdit   = "config.edit.own"
	permConfigDelete = "config.delete.own"
)

var configTypeParam = queryParam{"config_type", "string", "model (default), dataloader, webhook or lycoris"}

type configMessageBody struct {
	Message string `json:"message"`
}

type activatedBody struct {
	Message string `json:"message"`
	Active  string `json:"active"`
}

// activeBody is GET /api/configs/active: name, config and metadata, or null, {} and
// null when no environment is active.
type activeBody struct {
	Name     *string           `json:"name"`
	Config   any               `json:"config"`
	Metadata *configs.Metadata `json:"metadata"`
}

type examplesBody struct {
	Examples []configs.Example `json:"examples"`
	Count    int               `json:"count"`
}

type copyRequest struct {
	TargetName string `json:"target_name"`
}

type renameRequest struct {
	NewName string `json:"new_name"`
}

// withConfigs answers 503 when the server runs without the configs service.
func (s *Server) withConfigs(h handlerFunc) handlerFunc {
	return requires(func() bool { return s.cfg.Configs != nil }, "Configurations are", h)
}

// optionPerms are the option permissions (options.PermHooks) the caller holds, for the
// registry's validation.
func optionPerms(p *auth.Principal) []string {
	if p != nil && p.Can(auth.PermJobHooks) {
		return []string{options.PermHooks}
	}
	return nil
}

func configKind(r *http.Request) (configs.Kind, error) {
	k, err := configs.ParseKind(r.URL.Query().Get("config_type"))
	if err != nil {
		return "", &validationError{fieldError{Type: "enum", Loc: []string{"query", "config_type"}, Msg: err.Error()}}
	}
	return k, nil
}

// decodeOptionalJSON decodes a JSON body into v, leaving v as it is when the body is
// empty (POST /dataloader works without one).
func decodeOptionalJSON(r *http.Request, v any) error {
	if r.Body == nil || r.ContentLength == 0 {
		return nil
	}
	err := decodeJSON(r, v)
	var ve *validationError
	if errors.As(err, &ve) && ve.fe.Type == "missing" {
		return nil
	}
	return err
}

func (s *Server) createEnvironment(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	svc := s.cfg.Configs
	var req configs.EnvironmentRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	out, err := svc.CreateEnvironment(req, optionPerms(p))
	if err != nil {
		return err
	}
	out.Config = redactConfig(out.Config)
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listConfigs(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	svc := s.cfg.Configs
	kind, err := configKind(r)
	if err != nil {
		return err
	}
	out, err := svc.List(kind)
	if err != nil {
		return err
	}
	for i, c := range out.Configs {
		if c.WebhookConfig != nil {
			shown, _ := webhooks.Shown(*c.WebhookConfig).(string)
			out.Configs[i].WebhookConfig = &shown
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) activeConfig(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) error {
	svc := s.cfg.Configs
	out, err := svc.Active()
	if err != nil {
		return err
	}
	body := activeBody{Config: shownConfig(configs.KindModel, out.Config), Metadata: out.Metadata}
	if out.Name != "" {
		body.Name = &out.Name
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

func (s *Server) listExamples(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) error {
	ex, err := configs.Examples()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, examplesBody{Examples: ex, Count: len(ex)})
	return nil
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	svc := s.cfg.Configs
	kind, err := configKind(r)
	if err != nil {
		return err
	}
	out, err := svc.Get(kind, mux.Vars(r)["name"])
	if err != nil {
		return err
	}
	out.Config = shownConfig(kind, out.Config)
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) putConfig(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	svc := s.cfg.Configs
	kind, err := configKind(r)
	if err != nil {
		return err
	}
	var req configs.PutRequest
	if err := decodeJSONNumbers(r, &req); err != nil {
		return err
	}
	if req.Config == nil {
		return &validationError{fieldError{Type: "missing", Loc: []string{"body", "config"}, Msg: "Field required: send the configuration as \"config\""}}
	}
	out, err := svc.Put(kind, mux.Vars(r)["name"], req, optionPerms(p))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) deleteConfig(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	svc := s.cfg.Configs
	kind, err := configKind(r)
	if err != nil {
		return err
	}
	name := mux.Vars(r)["name"]
	if err := svc.Delete(kind, name); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, configMessageBody{Message: fmt.Sprintf("Configuration '%s' deleted", name)})
	return nil
}

func (s *Server) activateConfig(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	svc := s.cfg.Configs
	name, err := svc.Activate(mux.Vars(r)["name"])
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, activatedBody{Message: fmt.Sprintf("Configuration '%s' is now active", name), Active: name})
	return nil
}

func (s *Server) createDataloader(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	svc := s.cfg.Configs
	var req configs.DataloaderRequest
	if err := decodeOptionalJSON(r, &req); err != nil {
		return err
	}
	out, err := svc.CreateDataloader(mux.Vars(r)["name"], req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) exportConfig(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	svc := s.cfg.Configs
	include := true
	if v := r.URL.Query().Get("include_metadata"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return &validationError{fieldError{Type: "bool_parsing", Loc: []string{"query", "include_metadata"}, Msg: "must be true or false"}}
		}
		include = b
	}
	out, err := svc.Export(mux.Vars(r)["name"], include)
	if err != nil {
		return err
	}
	if include {
		out["config"] = shownConfig(configs.KindModel, out["config"])
	} else {
		out = redactConfig(out)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) importConfig(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	svc := s.cfg.Configs
	var req configs.ImportRequest
	if err := decodeJSONNumbers(r, &req); err != nil {
		return err
	}
	out, err := svc.Import(req, optionPerms(p))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) copyConfig(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	svc := s.cfg.Configs
	var req copyRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	out, err := svc.Copy(mux.Vars(r)["name"], req.TargetName)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) renameConfig(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	svc := s.cfg.Configs
	var req renameRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	out, err := svc.Rename(mux.Vars(r)["name"], req.NewName)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) validateConfig(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	svc := s.cfg.Configs
	out, err := svc.Validate(mux.Vars(r)["name"], optionPerms(p))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// shownConfig is a stored configuration of a kind as views show it: model configs
// through redactConfig, webhook configs through webhooks.Shown; the other kinds hold no
// secrets.
func shownConfig(kind configs.Kind, v any) any {
	switch kind {
	case configs.KindModel:
		if m, ok := v.(map[string]any); ok {
			return redactConfig(m)
		}
	case configs.KindWebhook:
		return webhooks.Shown(v)
	}
	return v
}

// decodeJSONNumbers is decodeJSON keeping the numbers of the config members as written
// (json.Number), so a "1e-4" or a 20-digit seed is stored exactly as the client sent it.
func decodeJSONNumbers(r *http.Request, v any) error {
	switch x := v.(type) {
	case *configs.PutRequest:
		var raw struct {
			Name        string          `json:"name"`
			Description *string         `json:"description"`
			Tags        []string        `json:"tags"`
			Config      json.RawMessage `json:"config"`
		}
		if err := decodeJSON(r, &raw); err != nil {
			return err
		}
		*x = configs.PutRequest{Name: raw.Name, Description: raw.Description, Tags: raw.Tags}
		return rawNumbers(raw.Config, &x.Config, "config")
	case *configs.ImportRequest:
		var raw struct {
			Data      json.RawMessage `json:"data"`
			Name      *string         `json:"name"`
			Overwrite bool            `json:"overwrite"`
		}
		if err := decodeJSON(r, &raw); err != nil {
			return err
		}
		*x = configs.ImportRequest{Name: raw.Name, Overwrite: raw.Overwrite}
		var data any
		if err := rawNumbers(raw.Data, &data, "data"); err != nil {
			return err
		}
		if data == nil {
			return nil
		}
		m, ok := data.(map[string]any)
		if !ok {
			return &validationError{fieldError{Type: "dict_type", Loc: []string{"body", "data"}, Msg: "data must be a JSON object"}}
		}
		x.Data = m
		return nil
	}
	return decodeJSON(r, v)
}

func rawNumbers(raw json.RawMessage, v *any, field string) error {
	if len(raw) == 0 {
		return nil
	}
	return jsonBodyError(jsondoc.DecodeNumbers(raw, v), "body", field)
}

func (s *Server) getLycoris(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	out, err := s.cfg.Configs.GetLycoris(mux.Vars(r)["env"])
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// lycorisBody decodes {"config": {...}}, keeping numbers as written (a LyCORIS config is
// stored as sent).
func lycorisBody(r *http.Request) (configs.LycorisRequest, error) {
	var raw struct {
		Config json.RawMessage `json:"config"`
	}
	var req configs.LycorisRequest
	if err := decodeJSON(r, &raw); err != nil {
		return req, err
	}
	if err := rawNumbers(raw.Config, &req.Config, "config"); err != nil {
		return req, err
	}
	if req.Config == nil {
		return req, &validationError{fieldError{Type: "missing", Loc: []string{"body", "config"}, Msg: "Field required: send the LyCORIS config as \"config\""}}
	}
	return req, nil
}

func (s *Server) putLycoris(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	req, err := lycorisBody(r)
	if err != nil {
		return err
	}
	out, err := s.cfg.Configs.PutLycoris(mux.Vars(r)["env"], req.Config)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) validateLycoris(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	req, err := lycorisBody(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, configs.ValidateLycoris(req.Config))
	return nil
}
