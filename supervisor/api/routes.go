package api

import (
	"net/http"

	"simpletuner/plugins"
	"simpletuner/plugins/workerproto"
	"simpletuner/supervisor/api/apidocs"
	"simpletuner/supervisor/api/ui"
	"simpletuner/supervisor/auth"
	"simpletuner/supervisor/configs"
	"simpletuner/supervisor/datasets"
	"simpletuner/supervisor/schedule"
	"simpletuner/supervisor/workers"
)

// Tags group the operations in the OpenAPI document.
const (
	tagAuth     = "auth"
	tagUsers    = "users"
	tagSystem   = "system"
	tagTraining = "training"
	tagSettings = "settings"
	tagConfigs  = "configurations"
	tagDatasets = "datasets"
	tagQueue    = "queue"
	tagWorkers  = "workers"
)

// authPath returns the path of an auth route, SimpleTuner's current /api/auth/…, and its
// one alias under the /api/cloud/auth/… prefix the tutorial uses (docs/compatibility.md §3).
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
		{method: "POST", path: "/api/users/{id:[0-9]+}/activate", tag: tagUsers, perm: auth.PermAdminUsers, summary: "Re-enable a user", resp: userSuccessBody{}, h: s.setActive(true)},
		{method: "POST", path: "/api/users/{id:[0-9]+}/deactivate", tag: tagUsers, perm: auth.PermAdminUsers, summary: "Disable a user and end their sessions", resp: userSuccessBody{}, h: s.setActive(false)},
		{method: "POST", path: "/api/users/{id:[0-9]+}/levels", tag: tagUsers, perm: auth.PermAdminUsers, summary: "Replace a user's levels", req: levelsRequest{}, resp: userBody{}, h: s.setLevels},

		// Settings.
		{method: "GET", path: "/api/cloud/settings/registration", aliases: []string{"/api/auth/settings/registration"}, tag: tagSettings, perm: auth.PermAdminConfig, summary: "Public registration policy", resp: auth.RegistrationSettings{}, h: s.getRegistration},
		{method: "PUT", path: "/api/cloud/settings/registration", aliases: []string{"/api/auth/settings/registration"}, tag: tagSettings, perm: auth.PermAdminConfig, summary: "Change the public registration policy", req: registrationRequest{}, resp: auth.RegistrationSettings{}, h: s.putRegistration},

		// Configurations (environments). Fixed paths come before /api/configs/{name}.
		{method: "POST", path: "/api/configs/environments", tag: tagConfigs, perm: permConfigCreate, summary: "Create an environment: config/<name>/config.json, .metadata.json and a starter multidatabackend.json", req: configs.EnvironmentRequest{}, resp: configs.Created{}, h: s.withConfigs(s.createEnvironment)},
		{method: "GET", path: "/api/configs/environments/{env}/lycoris", tag: tagConfigs, perm: permConfigView, summary: "An environment's LyCORIS config (the file its --lycoris_config names)", resp: configs.LycorisBody{}, h: s.withConfigs(s.getLycoris)},
		{method: "PUT", path: "/api/configs/environments/{env}/lycoris", tag: tagConfigs, perm: permConfigEdit, summary: "Check and save an environment's LyCORIS config; invalid ones get 422 with every message", req: configs.LycorisRequest{}, resp: configs.LycorisSaved{}, h: s.withConfigs(s.putLycoris)},
		{method: "POST", path: "/api/configs/lycoris/validate", tag: tagConfigs, perm: permConfigView, summary: "Check a LyCORIS config without saving it", req: configs.LycorisRequest{}, resp: configs.LycorisReport{}, h: s.validateLycoris},
		{method: "GET", path: "/api/configs/", aliases: []string{"/api/configs"}, tag: tagConfigs, perm: permConfigView, summary: "List configurations of one type", query: []queryParam{configTypeParam}, resp: configs.Listing{}, h: s.withConfigs(s.listConfigs)},
		{method: "GET", path: "/api/configs/active", tag: tagConfigs, perm: permConfigView, summary: "The active environment (name null when none)", resp: activeBody{}, h: s.withConfigs(s.activeConfig)},
		{method: "GET", path: "/api/configs/examples", tag: tagConfigs, perm: permConfigView, summary: "Bundled example environments (model family dit)", resp: examplesBody{}, h: s.listExamples},
		{method: "POST", path: "/api/configs/import", tag: tagConfigs, perm: permConfigCreate, summary: "Import an exported configuration", req: configs.ImportRequest{}, resp: configs.Saved{}, h: s.withConfigs(s.importConfig)},
		{method: "GET", path: "/api/configs/{name}", tag: tagConfigs, perm: permConfigView, summary: "One configuration; model configs carry both data_backend_config spellings", query: []queryParam{configTypeParam}, resp: configs.Loaded{}, h: s.withConfigs(s.getConfig)},
		{method: "PUT", path: "/api/configs/{name}", tag: tagConfigs, perm: permConfigEdit, summary: "Replace a configuration; invalid ones get 422 with every message, hook scripts need job.hooks", query: []queryParam{configTypeParam}, req: configs.PutRequest{}, resp: configs.Saved{}, h: s.withConfigs(s.putConfig)},
		{method: "DELETE", path: "/api/configs/{name}", tag: tagConfigs, perm: permConfigDelete, summary: "Delete a configuration (not the active one)", query: []queryParam{configTypeParam}, resp: configMessageBody{}, h: s.withConfigs(s.deleteConfig)},
		{method: "POST", path: "/api/configs/{name}/activate", tag: tagConfigs, perm: permConfigEdit, summary: "Make an environment the active one", resp: activatedBody{}, h: s.withConfigs(s.activateConfig)},
		{method: "POST", path: "/api/configs/{name}/dataloader", tag: tagConfigs, perm: permConfigEdit, summary: "Write a starter dataloader for an environment and point it there", req: configs.DataloaderRequest{}, resp: configs.DataloaderCreated{}, h: s.withConfigs(s.createDataloader)},
		{method: "GET", path: "/api/configs/{name}/export", tag: tagConfigs, perm: permConfigView, summary: "Export a configuration", query: []queryParam{{"include_metadata", "boolean", "wrap as {_metadata, config} (default true)"}}, resp: map[string]any{}, h: s.withConfigs(s.exportConfig)},
		{method: "POST", path: "/api/configs/{name}/copy", tag: tagConfigs, perm: permConfigCreate, summary: "Copy an environment", req: copyRequest{}, resp: configs.Saved{}, h: s.withConfigs(s.copyConfig)},
		{method: "POST", path: "/api/configs/{name}/rename", tag: tagConfigs, perm: permConfigEdit, summary: "Rename an environment", req: renameRequest{}, resp: configs.Saved{}, h: s.withConfigs(s.renameConfig)},
		{method: "POST", path: "/api/configs/{name}/validate", tag: tagConfigs, perm: permConfigView, summary: "Validate a stored environment as a job start would", resp: configs.Report{}, h: s.withConfigs(s.validateConfig)},

		// Datasets.
		{method: "POST", path: "/api/datasets/folders", tag: tagDatasets, perm: auth.PermDatasetWrite, summary: "Create a folder under the datasets directory", form: folderForm, resp: datasets.FolderResult{}, h: s.withDatasets(s.createFolder)},
		{method: "POST", path: "/api/datasets/upload", tag: tagDatasets, perm: auth.PermDatasetWrite, summary: "Upload files (field files or files[]) into a datasets folder; streamed to disk; overwrite=true needs dataset.overwrite", form: uploadForm, maxBody: s.cfg.MaxUploadBytes, resp: datasets.UploadResult{}, h: s.withDatasets(s.uploadFiles)},
		{method: "POST", path: "/api/datasets/upload/zip", tag: tagDatasets, perm: auth.PermDatasetWrite, summary: "Upload a zip archive and extract it into a datasets folder", form: zipForm, maxBody: s.cfg.MaxUploadBytes, resp: datasets.UploadResult{}, h: s.withDatasets(s.uploadZip)},
		{method: "GET", path: "/api/datasets/browse", tag: tagDatasets, perm: permConfigView, summary: "List a folder of the datasets directory", query: []queryParam{{"path", "string", "folder, relative to the datasets directory or absolute inside it (default: the datasets directory)"}}, resp: datasets.Listing{}, h: s.withDatasets(s.browseDatasets)},

		// Training control.
		{method: "POST", path: "/api/training/validate", aliases: []string{"/api/training/configuration/check"}, tag: tagTraining, perm: "config.view",
			summary: "Validate training fields merged over the active environment (the seed's \"Configuration Valid\")", form: s.trainingForm(),
			contentType: "text/html", resp: validationReport{}, h: s.withJobs(s.trainingValidate)},
		{method: "POST", path: "/api/training/start", aliases: []string{"/api/training/configuration/run"}, tag: tagTraining, perm: "job.submit",
			summary: "Validate, queue and start a training job", form: s.trainingForm(), contentType: "text/html", resp: startBody{}, h: s.withJobs(s.trainingStart)},
		{method: "GET", path: "/api/training/status", tag: tagTraining, summary: "State of your running job (or your last one; everyone's with job.view.all)", resp: trainingStatusBody{}, h: s.trainingStatus},
		{method: "POST", path: "/api/training/stop", tag: tagTraining, perm: "job.cancel.own", summary: "Stop the running job: save a checkpoint, then end", resp: messageBody{},
			query: []queryParam{{"job_id", "string", "the job (default: your running one)"}}, h: s.withJobs(s.trainingStop)},
		{method: "POST", path: "/api/training/cancel", tag: tagTraining, perm: "job.cancel.own", summary: "Cancel a job without saving (form field job_id, default the running one)",
			form: []formField{{name: "job_id", help: "the job to cancel (default: your running one)"}}, contentType: "text/html", resp: messageBody{}, h: s.withJobs(s.trainingCancel)},
		{method: "POST", path: "/api/training/validation/run", tag: tagTraining, perm: "job.submit", summary: "Run validation after the next gradient sync", resp: messageBody{},
			query: []queryParam{{"job_id", "string", "the job (default: your running one)"}}, h: s.withJobs(s.runCommand(plugins.CommandValidation, "Validation queued for the next gradient sync."))},
		{method: "POST", path: "/api/training/checkpoint/run", tag: tagTraining, perm: "job.submit", summary: "Save a checkpoint after the next gradient sync", resp: messageBody{},
			query: []queryParam{{"job_id", "string", "the job (default: your running one)"}}, h: s.withJobs(s.runCommand(plugins.CommandCheckpoint, "Checkpoint queued for the next gradient sync."))},
		{method: "GET", path: "/api/training/checkpoints", tag: tagTraining, summary: "Checkpoints of a job's output directory, newest first (only jobs you can see)", resp: checkpointsBody{},
			query: checkpointsQuery, h: s.withJobs(s.trainingCheckpoints)},
		{method: "POST", path: "/api/training/checkpoints", tag: tagTraining, summary: "Checkpoints of a job's output directory (POST form, as the tutorial uses)", resp: checkpointsBody{},
			query: checkpointsQuery, form: []formField{{name: "output_dir", help: "the output directory of a job you can see"}, {name: "job_id", help: "the job"}}, h: s.withJobs(s.trainingCheckpoints)},

		// Events.
		{method: "GET", path: "/api/training/events", tag: tagTraining, summary: "Stored events of every job you can see (or one job) after a server-wide index; progress and validation included",
			resp: eventsBody{}, query: append(eventQuery[:len(eventQuery):len(eventQuery)], queryParam{"limit", "integer", "page size (default 1000, at most 10000)"}), h: s.withEvents(s.trainingEvents)},
		{method: "GET", path: "/api/training/events/stream", tag: tagTraining, summary: "Live events: a WebSocket when upgraded ({\"job_id\",\"event\"} messages), Server-Sent Events otherwise; resumes from Last-Event-ID or since_index",
			contentType: "text/event-stream", query: eventQuery, h: s.withEvents(s.trainingEventStream)},
		{method: "GET", path: "/api/events", tag: tagTraining, summary: "Live events as Server-Sent Events (id = server-wide index; heartbeat every 15 s); resumes from Last-Event-ID or since_index",
			contentType: "text/event-stream", query: eventQuery, h: s.withEvents(s.eventStream)},

		// Jobs.
		{method: "GET", path: "/api/jobs", tag: tagTraining, summary: "Jobs, newest first (yours, or all with job.view.all)", resp: jobsBody{},
			query: []queryParam{{"status", "string", "only jobs with this status"}}, h: s.withJobs(s.listJobs)},
		{method: "GET", path: "/api/jobs/{job_id:[A-Za-z0-9_-]+}", tag: tagTraining, summary: "One job with its resolved config and exit record", resp: jobBody{}, h: s.withJobs(s.getJob)},
		{method: "GET", path: "/api/jobs/{job_id:[A-Za-z0-9_-]+}/events", tag: tagTraining, summary: "A job's stored events after since_seq", resp: jobEventsBody{},
			query: []queryParam{{"since_seq", "integer", "return events with a larger sequence number"}}, h: s.withJobs(s.jobEvents)},

		// Queue.
		{method: "GET", path: "/api/queue", tag: tagQueue, perm: "queue.view", summary: "Queued and running jobs", resp: queueListBody{},
			query: []queryParam{{"include_completed", "boolean", "include ended jobs"}}, h: s.withJobs(s.listQueue)},
		{method: "GET", path: "/api/queue/stats", tag: tagQueue, perm: "queue.view", summary: "Queue depth, limits and local GPU use", resp: queueStatsBody{}, h: s.withJobs(s.queueStats)},
		{method: "POST", path: "/api/queue/submit", tag: tagQueue, perm: "job.submit", summary: "Queue a stored environment on a target: auto (an idle matching worker, else here), local, worker or slurm; a target nothing here serves is a 400", req: submitRequest{}, resp: submitBody{}, h: s.withJobs(s.queueSubmit)},
		{method: "POST", path: "/api/queue/concurrency", tag: tagQueue, perm: "queue.manage", summary: "Set local_job_max_concurrent and local_gpu_max_concurrent (null: unlimited)", req: concurrencyRequest{}, resp: concurrencyBody{}, h: s.withJobs(s.queueConcurrency)},
		{method: "POST", path: "/api/queue/{job_id:[A-Za-z0-9_-]+}/cancel", tag: tagQueue, summary: "Cancel a queued or running job", resp: successJobBody{}, h: s.withJobs(s.queueCancel)},
		{method: "POST", path: "/api/queue/{job_id:[A-Za-z0-9_-]+}/priority", tag: tagQueue, summary: "Change a queued job's priority (0–50); needs queue.manage", req: priorityRequest{}, resp: successJobBody{}, h: s.withJobs(s.queuePriority)},

		// Approvals (issue 15, part "approvals"): jobs submitted with for_approval wait in
		// pending_approval until a user with admin.approve approves or rejects them. Paths as
		// SimpleTuner's client calls them, and its server's /requests spelling as aliases.
		{method: "GET", path: "/api/approvals", aliases: []string{"/api/approvals/requests"}, tag: tagQueue, summary: "Approval requests, newest first (all with admin.approve, else those of jobs you can see)", resp: approvalsBody{},
			query: []queryParam{{"status", "string", "pending, approved, rejected or cancelled"}, {"limit", "integer", "page size (default 50, at most 200)"}, {"offset", "integer", "rows to skip"}}, h: s.withJobs(s.listApprovals)},
		{method: "GET", path: "/api/approvals/rules", tag: tagQueue, perm: permApprove, summary: "Approval rules (none: only for_approval submissions wait for approval)", resp: approvalRulesBody{}, h: s.listApprovalRules},
		{method: "POST", path: "/api/approvals/{approval_id:[0-9]+}/approve", aliases: []string{"/api/approvals/requests/{approval_id:[0-9]+}/approve"}, tag: tagQueue, perm: permApprove,
			summary: "Approve a pending request: its job joins the queue", req: reviewRequest{}, resp: reviewBody{}, h: s.withJobs(s.reviewApproval(true))},
		{method: "POST", path: "/api/approvals/{approval_id:[0-9]+}/reject", aliases: []string{"/api/approvals/requests/{approval_id:[0-9]+}/reject"}, tag: tagQueue, perm: permApprove,
			summary: "Reject a pending request (reason required): its job ends cancelled with the reason", req: reviewRequest{}, resp: reviewBody{}, h: s.withJobs(s.reviewApproval(false))},

		// Cloud jobs (issue 15, part cloudjobs): SimpleTuner's job routes, the ones its CLI's
		// `jobs list|get|logs|cancel|delete|purge` call, over the same jobs as /api/jobs.
		{method: "GET", path: "/api/cloud/jobs", tag: tagTraining, summary: "Jobs in SimpleTuner's shape, newest first (yours, or all with job.view.all); total counts every match", resp: cloudJobListBody{},
			query: cloudJobsQuery, h: s.withJobs(s.cloudListJobs)},
		{method: "GET", path: "/api/cloud/jobs/{job_id:[A-Za-z0-9_-]+}", tag: tagTraining, summary: "One job in SimpleTuner's shape", resp: cloudJobOne{}, h: s.withJobs(s.cloudGetJob)},
		{method: "GET", path: "/api/cloud/jobs/{job_id:[A-Za-z0-9_-]+}/logs", tag: tagTraining, summary: "The end of a job's trainer log (last 50 kB)", resp: cloudJobLogsBody{}, h: s.withJobs(s.cloudJobLogs)},
		{method: "GET", path: "/api/cloud/jobs/{job_id:[A-Za-z0-9_-]+}/logs/stream", tag: tagTraining, summary: "A job's trainer log as Server-Sent Events, one data line each; event done with the final status when the job ends",
			contentType: "text/event-stream", h: s.withJobs(s.cloudJobLogStream)},
		{method: "POST", path: "/api/cloud/jobs/{job_id:[A-Za-z0-9_-]+}/cancel", tag: tagTraining, summary: "Cancel a queued or running job without saving (job.cancel.own / job.cancel.all)", resp: cloudCancelBody{}, h: s.withJobs(s.cloudCancelJob)},
		{method: "DELETE", path: "/api/cloud/jobs/{job_id:[A-Za-z0-9_-]+}", tag: tagTraining, summary: "Delete an ended job's record (job.delete.own / job.delete.all); cancel a running job first", resp: successJobBody{}, h: s.withJobs(s.cloudDeleteJob)},

		// Part "workers" (issue 16): remote workers. Admin routes need admin.workers; the
		// worker protocol authenticates the worker by its X-Worker-Token (access workerAuth).
		{method: "POST", path: "/api/admin/workers", tag: tagWorkers, perm: permWorkers, summary: "Create a worker; its token is shown once, with the command that starts it", req: workers.CreateRequest{}, resp: workers.Credentials{}, h: s.withWorkers(s.createWorker)},
		{method: "GET", path: "/api/admin/workers", tag: tagWorkers, perm: permWorkers, summary: "Workers, oldest first, with flat gpu_name and gpu_count", resp: workersListBody{},
			query: []queryParam{{"status_filter", "string", "only workers in this status: connecting, idle, busy, offline or draining"}}, h: s.withWorkers(s.listWorkers)},
		{method: "DELETE", path: "/api/admin/workers/{worker_id:[A-Za-z0-9_-]+}", tag: tagWorkers, perm: permWorkers, summary: "Delete a worker (told to shut down); one running a job needs force=true, and its job is requeued", resp: workerActionBody{},
			query: []queryParam{{"force", "boolean", "delete even while it runs a job"}}, h: s.withWorkers(s.deleteWorker)},
		{method: "POST", path: "/api/admin/workers/{worker_id:[A-Za-z0-9_-]+}/drain", tag: tagWorkers, perm: permWorkers, summary: "Drain a worker: it finishes its job and takes no more", resp: workerActionBody{}, h: s.withWorkers(s.drainWorker)},
		{method: "POST", path: "/api/admin/workers/{worker_id:[A-Za-z0-9_-]+}/token", tag: tagWorkers, perm: permWorkers, summary: "Give a worker a new token (shown once); the old one stops working", resp: workers.Credentials{}, h: s.withWorkers(s.rotateWorkerToken)},
		{method: "POST", path: "/api/workers/register", tag: tagWorkers, access: workerAuth, summary: "A worker registers its GPUs and labels; answers the job to resume or abandon", req: workerproto.RegisterRequest{}, resp: workerproto.RegisterResponse{}, h: s.workerRegister},
		{method: "GET", path: "/api/workers/stream", tag: tagWorkers, access: workerAuth, summary: "A worker's dispatch stream (Server-Sent Events: job_submit, job_command, job_cancel, drain, shutdown, ping)",
			contentType: "text/event-stream", query: []queryParam{{"worker_id", "string", "the calling worker's id"}}, h: s.workerStream},
		{method: "POST", path: "/api/workers/heartbeat", tag: tagWorkers, access: workerAuth, summary: "A worker's heartbeat (every 30 s)", req: workerproto.Heartbeat{}, resp: workerproto.Success{}, h: s.workerHeartbeat},
		{method: "POST", path: "/api/workers/job/{job_id:[A-Za-z0-9_-]+}/status", tag: tagWorkers, access: workerAuth, summary: "A worker reports its job's status; a final one is refused (409) until its events are stored", req: workerproto.JobStatus{}, resp: workerproto.Success{}, h: s.workerJobStatus},
		{method: "POST", path: "/api/workers/job/{job_id:[A-Za-z0-9_-]+}/events", tag: tagWorkers, access: workerAuth, summary: "A worker uploads its job's events in seq order; answers the last stored seq (409 when a batch leaves a gap)", req: workerproto.EventBatch{}, resp: workerproto.EventAck{},
			maxBody: maxEventBatchBytes, h: s.workerJobEvents},

		// System.
		{method: "GET", path: "/api/system/status", tag: tagSystem, summary: "Load, memory, GPUs and (include_allocation=true) who holds them", resp: systemStatusBody{},
			query: []queryParam{{"include_allocation", "boolean", "add the local GPU allocation"}}, h: s.withJobs(s.systemStatus)},

		// Part "system" (issue 15: SimpleTuner's own CLI): shutdown.
		{method: "POST", path: "/api/system/shutdown", tag: tagSystem, perm: auth.PermAdminConfig, summary: "Stop the daemon gracefully, as SIGTERM does: running trainers keep running and the next start reattaches them",
			resp: shutdownBody{}, h: s.systemShutdown},

		// Part "schedule" (issue 17): cron schedules. A schedule submits an environment,
		// steers a running job or cleans up by a retention policy, as its owner; users see
		// their own, administrators (admin.config) every one, the daemon's built-in
		// maintenance schedules included (read-only).
		{method: "GET", path: "/api/schedules", tag: tagQueue, summary: "Schedules, oldest first (yours; every one, built-in maintenance included, with admin.config)", resp: schedulesBody{}, h: s.withSchedules(s.listSchedules)},
		{method: "POST", path: "/api/schedules", tag: tagQueue, status: http.StatusCreated, summary: "Create a schedule: a cron spec (5 fields, @daily, @every 6h, optional CRON_TZ=) and an action (submit, checkpoint, validate, cleanup)",
			req: schedule.Request{}, resp: scheduleBody{}, h: s.withSchedules(s.createSchedule)},
		{method: "GET", path: "/api/schedules/{schedule_id:[A-Za-z0-9_-]+}", tag: tagQueue, summary: "One schedule with its next and last run", resp: scheduleBody{}, h: s.withSchedules(s.getSchedule)},
		{method: "PUT", path: "/api/schedules/{schedule_id:[A-Za-z0-9_-]+}", tag: tagQueue, summary: "Change a schedule (fields left out keep their value; built-in ones are read-only)", req: schedule.Request{}, resp: scheduleBody{}, h: s.withSchedules(s.putSchedule)},
		{method: "DELETE", path: "/api/schedules/{schedule_id:[A-Za-z0-9_-]+}", tag: tagQueue, summary: "Delete a schedule", resp: successBody{}, h: s.withSchedules(s.deleteSchedule)},
		{method: "POST", path: "/api/schedules/{schedule_id:[A-Za-z0-9_-]+}/run", tag: tagQueue, summary: "Run a schedule now, as its owner; recorded and an event like a scheduled run", resp: scheduleRunBody{}, h: s.withSchedules(s.runSchedule)},
		// Part "metrics" (issue 17): Prometheus metrics. Public as far as accounts go:
		// the handler admits callers on this machine, or anyone with the scrape token.
		{method: "GET", path: "/metrics", tag: tagSystem, access: public, contentType: "text/plain", forbidden: "Not on this machine and without the scrape token, or a wrong token", h: requires(func() bool { return s.cfg.Metrics != nil }, "Metrics", s.metrics),
			summary: "Prometheus metrics (text format): jobs, queue, GPUs, training progress, webhooks, hooks, request latency. Callers on this machine, or with Authorization: Bearer and the --metrics-token"},

		// Part "ui" (issue 17): the status page. The HTML holds no data (the script reads the
		// API with the session cookie), so it is public; /web/trainer is where SimpleTuner's
		// own / leads, so its bookmarks land here too.
		{method: "GET", path: ui.PagePath, aliases: []string{"/web/trainer"}, tag: tagSystem, access: public, summary: "The status page: jobs, live progress, loss and validation images, GPUs, queue and schedules (log in with the session cookie)",
			contentType: "text/html", raw: s.ui.Page()},
		{method: "GET", path: ui.AssetsPath + "{file}", tag: tagSystem, access: public, summary: "Script and style of the status page", contentType: "text/javascript", raw: s.ui.Assets()},
	}
}
