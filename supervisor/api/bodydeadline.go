package api

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// bodyDeadline puts a read deadline on r's body: a client must send it within
// cfg.BodyTimeout, plus one second for every cfg.MinBodyRate bytes it has sent. A small
// JSON body therefore gets BodyTimeout, and a large upload as long as it keeps moving
// (10 GiB at the default 32 KiB/s is allowed some 90 hours) while one that trickles a
// byte at a time is cut off: the server answers 408 and closes the connection. The
// http.Server has no ReadTimeout for this because one whole-request timeout would either
// cut legitimate uploads or let a trickle hold a connection for as long as an upload.
//
// Event streams carry no body and get none (route.streams): a deadline left on their
// connection would end the stream. Once the body is fully read the deadline is cleared,
// so a slow handler is not mistaken for a vanished client. Where the writer cannot set
// deadlines (test recorders) the body is returned unchanged.
func (s *Server) bodyDeadline(w http.ResponseWriter, r *http.Request) io.ReadCloser {
	if r.Body == nil || r.Body == http.NoBody {
		return r.Body
	}
	b := &deadlineBody{ReadCloser: r.Body, rc: http.NewResponseController(w), start: time.Now(),
		timeout: s.cfg.BodyTimeout, rate: s.cfg.MinBodyRate}
	if err := b.rc.SetReadDeadline(b.deadline()); err != nil {
		return r.Body
	}
	b.set = b.deadline()
	return b
}

// deadlineBody is a request body under bodyDeadline. Only the handler's goroutine reads
// it, so its fields need no lock.
type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	start   time.Time
	timeout time.Duration
	rate    int64     // bytes a second that earn one more second
	n       int64     // bytes read so far
	set     time.Time // the deadline last given to the connection
}

// deadline is when the body must be complete, given what arrived so far.
func (b *deadlineBody) deadline() time.Time {
	return b.start.Add(b.timeout + time.Duration(b.n/b.rate)*time.Second)
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	switch {
	case err == nil:
		// Move the deadline at most once a second's worth of progress: each move is a
		// call into the poller.
		if d := b.deadline(); d.Sub(b.set) >= time.Second {
			_ = b.rc.SetReadDeadline(d)
			b.set = d
		}
	case errors.Is(err, io.EOF):
		_ = b.rc.SetReadDeadline(time.Time{})
	case isTimeout(err):
		return n, &bodyTimeoutError{timeout: b.timeout, rate: b.rate, read: b.n}
	}
	return n, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// bodyTimeoutError is a body that did not arrive in time; it is answered 408.
type bodyTimeoutError struct {
	timeout time.Duration
	rate    int64
	read    int64
}

func (e *bodyTimeoutError) Error() string {
	return fmt.Sprintf("Request body not received in time (%d bytes arrived): send the whole body within %s, or keep it moving at %d KiB/s or more",
		e.read, e.timeout, e.rate>>10)
}

// transportError returns err when reading the body itself failed (over the size cap, or
// too slow), which is answered as such rather than as a malformed body; nil otherwise.
func transportError(err error) error {
	var mbe *http.MaxBytesError
	var bte *bodyTimeoutError
	if errors.As(err, &mbe) || errors.As(err, &bte) {
		return err
	}
	return nil
}
