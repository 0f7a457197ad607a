package client

import (
	"context"
	"encoding/json"
	"net/url"
)

// Worker is a registered remote worker as GET /api/admin/workers shows it. The GPU is
// read from the flat gpu_name/gpu_count fields, or from gpu_info where only those are
// given (SimpleTuner's own answer).
type Worker struct {
	WorkerID      string            `json:"worker_id"`
	Name          string            `json:"name"`
	WorkerType    string            `json:"worker_type"`
	Status        string            `json:"status"`
	GPUName       *string           `json:"gpu_name"`
	GPUCount      *int              `json:"gpu_count"`
	GPUInfo       *WorkerGPU        `json:"gpu_info"`
	Labels        map[string]string `json:"labels"`
	CurrentJobID  *string           `json:"current_job_id"`
	LastHeartbeat *string           `json:"last_heartbeat"`
}

// WorkerGPU is a worker's gpu_info: what its GPUs are and how many.
type WorkerGPU struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// GPU is the worker's GPU model and count, from whichever fields the server filled (an
// empty flat field does not hide gpu_info).
func (w Worker) GPU() (name string, count int) {
	if w.GPUInfo != nil {
		name, count = w.GPUInfo.Name, w.GPUInfo.Count
	}
	if w.GPUName != nil && *w.GPUName != "" {
		name = *w.GPUName
	}
	if w.GPUCount != nil && *w.GPUCount > 0 {
		count = *w.GPUCount
	}
	return name, count
}

// WorkerToken is the answer of creating a worker or rotating its token: the token in
// clear, which the server shows only this once, and the command that connects the worker.
type WorkerToken struct {
	WorkerID          string `json:"worker_id"`
	Token             string `json:"token"`
	ConnectionCommand string `json:"connection_command"`
}

// Workers lists the registered workers (those in status, when not empty), with the raw
// answer for callers that print it as it came.
func (c *Client) Workers(ctx context.Context, status string) ([]Worker, json.RawMessage, error) {
	path := "/api/admin/workers"
	if status != "" {
		path += "?status_filter=" + url.QueryEscape(status)
	}
	var raw json.RawMessage
	if err := c.Do(ctx, "GET", path, nil, &raw); err != nil {
		return nil, nil, err
	}
	var out struct {
		Workers []Worker `json:"workers"`
	}
	err := json.Unmarshal(raw, &out)
	return out.Workers, raw, err
}

// CreateWorker registers a worker: persistent, or ephemeral (removed after its job),
// with labels jobs select it by.
func (c *Client) CreateWorker(ctx context.Context, name string, ephemeral bool, labels map[string]string) (*WorkerToken, error) {
	kind := "persistent"
	if ephemeral {
		kind = "ephemeral"
	}
	if labels == nil {
		labels = map[string]string{}
	}
	var out WorkerToken
	err := c.Do(ctx, "POST", "/api/admin/workers", map[string]any{"name": name, "worker_type": kind, "labels": labels}, &out)
	return &out, err
}

// DrainWorker lets a worker finish its job and take no other.
func (c *Client) DrainWorker(ctx context.Context, id string) error {
	return c.Do(ctx, "POST", "/api/admin/workers/"+url.PathEscape(id)+"/drain", nil, nil)
}

// DeleteWorker removes a worker; force removes it even while it runs a job.
func (c *Client) DeleteWorker(ctx context.Context, id string, force bool) error {
	path := "/api/admin/workers/" + url.PathEscape(id)
	if force {
		path += "?force=true"
	}
	return c.Do(ctx, "DELETE", path, nil, nil)
}

// RotateWorkerToken gives a worker a new token; the old one stops working.
func (c *Client) RotateWorkerToken(ctx context.Context, id string) (*WorkerToken, error) {
	var out WorkerToken
	err := c.Do(ctx, "POST", "/api/admin/workers/"+url.PathEscape(id)+"/token", nil, &out)
	return &out, err
}
