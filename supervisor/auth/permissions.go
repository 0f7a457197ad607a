package auth

import (
	"slices"
	"strings"
)

// Level is a named bundle of permissions a user can hold.
type Level struct {
	ID          int      `json:"id"`
	Name        string   `json:"name"`
	Priority    int      `json:"priority"`
	Description string   `json:"description"`
	Permissions []string `json:"permissions"`
	IsSystem    bool     `json:"is_system"`
}

// Permission names used by the daemon's own routes.
const (
	PermAdminUsers  = "admin.users"
	PermAdminLevels = "admin.levels"
	PermAdminConfig = "admin.config"
	PermAPIKeysOwn  = "api.keys.own"
	PermAPIKeysAll  = "api.keys.all"
	PermAPIAccess   = "api.access"
	// PermJobHooks lets a user set options that run commands on the server (hook scripts,
	// ssl_no_verify). SimpleTuner lets anyone do that; here only lead and admin may.
	PermJobHooks = "job.hooks"
	// PermDatasetWrite lets a user create folders and upload files or archives under the
	// datasets directory (researcher and up). Browsing needs only config.view.
	PermDatasetWrite = "dataset.write"
	// PermDatasetOverwrite lets a user replace existing dataset files (overwrite=true).
	// Files carry no uploader, so a researcher could otherwise replace another user's
	// images and captions; only lead and admin may.
	PermDatasetOverwrite = "dataset.overwrite"
)

// Catalogue lists every permission, in the order the API documents them.
func Catalogue() []string {
	return []string{
		"job.submit", "job.view.own", "job.view.all", "job.cancel.own", "job.cancel.all",
		"job.delete.own", "job.delete.all", "job.priority.high", "job.bypass.queue",
		"job.bypass.approval", "job.bypass.quota", PermJobHooks,
		"config.view", "config.create", "config.edit.own", "config.edit.all", "config.delete.own", "config.delete.all",
		PermDatasetWrite, PermDatasetOverwrite,
		"queue.view", "queue.view.all", "queue.cancel.own", "queue.cancel.all", "queue.approve", "queue.manage",
		"quota.view", "quota.manage",
		PermAdminUsers, PermAdminLevels, "admin.quotas", "admin.approve", PermAdminConfig, "admin.audit", "admin.queue", "admin.workers",
		"org.view", "org.create", "org.edit", "org.delete", "org.manage.members", "org.manage.quotas",
		"team.view", "team.create", "team.edit", "team.delete", "team.manage.members", "team.manage.quotas",
		PermAPIAccess, PermAPIKeysOwn, PermAPIKeysAll,
	}
}

// Levels returns the built-in levels, lowest first. They cannot be deleted.
func Levels() []Level {
	viewer := []string{"job.view.own", "config.view"}
	researcher := []string{"job.submit", "job.view.own", "job.cancel.own", "job.delete.own", "config.view",
		"config.create", "config.edit.own", "config.delete.own", "queue.view", "queue.cancel.own",
		PermAPIAccess, PermAPIKeysOwn, PermDatasetWrite}
	lead := append(slices.Clone(researcher), PermDatasetOverwrite, "job.view.all", "job.priority.high", "queue.view.all",
		"queue.approve", "quota.view", "admin.approve", "admin.audit", "org.view", "team.view",
		"team.create", "team.edit", "team.manage.members", "team.manage.quotas", PermJobHooks)
	return []Level{
		{ID: 1, Name: "viewer", Priority: 0, Description: "Read-only access to own jobs and configurations", Permissions: viewer, IsSystem: true},
		{ID: 2, Name: "researcher", Priority: 10, Description: "Submit and manage own jobs and configurations", Permissions: researcher, IsSystem: true},
		{ID: 3, Name: "lead", Priority: 50, Description: "Researcher plus team oversight, approvals and hook scripts", Permissions: lead, IsSystem: true},
		{ID: 4, Name: "admin", Priority: 100, Description: "Everything", Permissions: []string{"*"}, IsSystem: true},
	}
}

// LevelByName returns the built-in level with that name.
func LevelByName(name string) (Level, bool) {
	for _, l := range Levels() {
		if l.Name == name {
			return l, true
		}
	}
	return Level{}, false
}

// PermissionsFor returns the sorted permission set of a user with these levels.
func PermissionsFor(levels []string, isAdmin bool) []string {
	if isAdmin {
		return []string{"*"}
	}
	var out []string
	for _, name := range levels {
		l, ok := LevelByName(name)
		if !ok {
			continue
		}
		if slices.Contains(l.Permissions, "*") {
			return []string{"*"}
		}
		out = append(out, l.Permissions...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// HasPermission reports whether the set grants p, honouring "*" and hierarchical
// wildcards such as "job.*".
func HasPermission(set []string, p string) bool {
	for _, g := range set {
		if g == "*" || g == p {
			return true
		}
		if prefix, ok := strings.CutSuffix(g, ".*"); ok && strings.HasPrefix(p, prefix+".") {
			return true
		}
	}
	return false
}
