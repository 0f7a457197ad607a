package runner

import (
	"context"
	"fmt"
	"sync"

	"simpletuner/plugins"
	"simpletuner/plugins/kit"
)

// watchingCommands runs a long set-up phase (fetching weights, filling the encoder caches)
// while acting on the job's commands, which the training loop only reads after a gradient
// sync: gigabytes to download or thousands of images to encode must not make a stop or a
// cancel wait for them. Either one cancels f's context (what f finished is kept: a partial
// download resumes, cache entries stay valid) and is returned as kit.ErrStopped or
// kit.ErrCancelled; with nothing trained yet a stop has nothing to save. A checkpoint or
// validation request has nothing to act on either, so it is answered with a warning saying
// busy (what the phase is doing).
func watchingCommands[T any](t *trainer, ctx context.Context, busy string, f func(context.Context) (T, error)) (T, error) {
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case c := <-t.job.Commands():
				switch c {
				case plugins.CommandStop:
					cancel(kit.ErrStopped)
					return
				case plugins.CommandCancel:
					cancel(kit.ErrCancelled)
					return
				default:
					t.ev.warn("Command ignored", fmt.Sprintf("%s ignored: %s", c, busy), map[string]any{"command": c})
				}
			}
		}
	})
	v, err := f(fctx)
	close(done)
	wg.Wait()
	// A command that came as f ended still ends the job: the user asked for it.
	if cause := context.Cause(fctx); isUserEnding(cause) {
		return v, cause
	}
	return v, err
}
