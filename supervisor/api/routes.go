package api

import (
	"net/http"

	"simpletuner/supervisor/api/apidocs"
	"simpletuner/supervisor/auth"
)

// Tags group the operations in the OpenAPI document.
const (
	tagAuth     = "auth"
	tagUsers    = "users"
	tagSystem   = "system"
	tagTraining = "training"
	tagSettings = "settings"
)

// authAliases returns the paths of an auth route: SimpleTuner's current /api/auth/… and
// the /api/cloud/auth/… prefix the tutorial uses.
func authPath(suffix string) (string, []string) {
	return "/api/auth" + suffix, []string{"/api/cloud/auth" + suffix}
}

// routeTable is the whole HTTP API, one row per operation.
func (s *Server) routeTable() []route {
	a := func(method, suffix string, r route) route {
		r.method = method
		r.path, r.aliases = authPath(suffix)
		r.tag = tagAuth
		return r
	}
	return []route{
		// System and documentation.
		{method: "GET", path: "/health", tag: tagSystem, access: public, summary: "Liveness check", resp: healthBody{}, h: s.health},
		{method: "GET", path: "/api/version", tag: tagSystem, access: public, summary: "Version of the running daemon", resp: versionBody{}, h: s.versionInfo},
		{method: "GET", path: "/openapi.json", tag: tagSystem, access: public, summary: "This OpenAPI document", resp: map[string]any{}, h: s.openAPIDoc},
		{method: "GET", path: apidocs.SwaggerPath, tag: tagSystem, access: public, summary: "Interactive API documentation (Swagger UI)", contentType: "text/html", raw: s.docs.SwaggerUI()},
		{method: "GET", path: apidocs.ReDocPath, tag: tagSystem, access: public, summary: "API reference (ReDoc)", contentType: "text/html", raw: s.docs.ReDoc()},
		{method: "GET", path: apidocs.AssetsPath + "{file}", tag: tagSystem, access: public, summary: "Scripts and styles of the documentation pages", contentType: "application/javascript", raw: s.docs.Assets()},

		// Authentication.
		a("GET", "/setup/status", route{access: public, summary: "Whether the first administrator must still be created", resp: auth.SetupStatus{}, h: s.setupStatus}),
		a("POST", "/setup/first-admin", route{access: public, summary: "Create the first administrator (once); from the server machine, or with the bootstrap token", req: setupRequest{}, resp: firstAdminBody{}, h: s.firstAdmin}),
		a("POST", "/login", route{access: public, summary: "Log in; sets the simpletuner_session cookie", req: loginRequest{}, resp: loginBody{}, h: s.login}),
		a("POST", "/logout", route{access: public, summary: "Log out; ends the session server-side", resp: successBody{}, h: s.logout}),
		a("GET", "/me", route{summary: "The calling user", resp: userBody{}, h: s.me}),
		a("GET", "/check", route{access: public, summary: "Whether the caller is authenticated", resp: checkBody{}, h: s.check}),
		a("POST", "/register", route{access: public, summary: "Public registration (disabled unless an administrator enables it)", req: setupRequest{}, resp: loginBody{}, h: s.register}),
		a("POST", "/change-password", route{summary: "Change the caller's password; ends the caller's other sessions", req: changePasswordRequest{}, resp: successBody{}, h: s.changePassword}),
		a("POST", "/api-keys", route{perm: auth.PermAPIKeysOwn, summary: "Create an API key (shown once)", req: apiKeyRequest{}, resp: apiKeyCreated{}, h: s.createAPIKey}),
		a("GET", "/api-keys", route{summary: "The caller's API keys (without secrets)", resp: []apiKeyInfo{}, h: s.listAPIKeys}),
		a("DELETE", "/api-keys/{key_id:[0-9]+}", route{summary: "Revoke an API key", resp: successBody{}, h: s.revokeAPIKey}),

		// Users.
		{method: "GET", path: "/api/users", tag: tagUsers, perm: auth.PermAdminUsers, summary: "List users", resp: []userBody{},
			query: []queryParam{{"limit", "integer", "page size (default 100)"}, {"offset", "integer", "rows to skip"}, {"include_inactive", "boolean", "include deactivated users"}}, h: s.listUsers},
		{method: "POST", path: "/api/users", tag: tagUsers, perm: auth.PermAdminUsers, status: http.StatusCreated, summary: "Create a user", req: createUserRequest{}, resp: userBody{}, h: s.createUser},
		{method: "GET", path: "/api/users/me", tag: tagUsers, perm: auth.PermAPIAccess, summary: "The calling user", resp: userBody{}, h: s.me},
		{method: "GET", path: "/api/users/meta/levels", tag: tagUsers, perm: auth.PermAdminLevels, summary: "The permission levels", resp: []auth.Level{}, h: s.listLevels},
		{method: "GET", path: "/api/users/meta/permissions", tag: tagUsers, perm: auth.PermAdminLevels, summary: "The permission catalogue", resp: []permissionBody{}, h: s.listPermissions},
		{method: "GET", path: "/api/users/meta/auth-status", tag: tagUsers, access: public, summary: "Whether accounts are in use", resp: authStatusBody{}, h: s.authStatus},
		{method: "GET", path: "/api/users/{id:[0-9]+}", tag: tagUsers, perm: auth.PermAdminUsers, summary: "One user", resp: userBody{}, h: s.getUser},
		{method: "PATCH", path: "/api/users/{id:[0-9]+}", tag: tagUsers, perm: auth.PermAdminUsers, summary: "Update a user", req: updateUserRequest{}, resp: userBody{}, h: s.updateUser},
		{method: "DELETE", path: "/api/users/{id:[0-9]+}", tag: tagUsers, perm: auth.PermAdminUsers, summary: "Delete a user, their sessions and API keys", resp: successBody{}, h: s.deleteUser},
		{method: "POST", path: "/api/users/{id:[0-9]+}/activate", tag: tagUsers, perm: auth.PermAdminUsers, summary: "Re-enable a user", resp: userBody{}, h: s.setActive(true)},
		{method: "POST", path: "/api/users/{id:[0-9]+}/deactivate", tag: tagUsers, perm: auth.PermAdminUsers, summary: "Disable a user and end their sessions", resp: userBody{}, h: s.setActive(false)},
		{method: "POST", path: "/api/users/{id:[0-9]+}/levels", tag: tagUsers, perm: auth.PermAdminUsers, summary: "Replace a user's levels", req: levelsRequest{}, resp: userBody{}, h: s.setLevels},

		// Settings.
		{method: "GET", path: "/api/cloud/settings/registration", aliases: []string{"/api/auth/settings/registration"}, tag: tagSettings, perm: auth.PermAdminConfig, summary: "Public registration policy", resp: auth.RegistrationSettings{}, h: s.getRegistration},
		{method: "PUT", path: "/api/cloud/settings/registration", aliases: []string{"/api/auth/settings/registration"}, tag: tagSettings, perm: auth.PermAdminConfig, summary: "Change the public registration policy", req: registrationRequest{}, resp: auth.RegistrationSettings{}, h: s.putRegistration},

		// Training.
		{method: "GET", path: "/api/training/status", tag: tagTraining, summary: "State of the current training job", resp: trainingStatusBody{}, h: s.trainingStatus},
	}
}
