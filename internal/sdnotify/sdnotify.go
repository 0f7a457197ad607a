// Package sdnotify implements the sender side of systemd's sd_notify
// protocol without cgo or third-party modules.
//
// A service started with Type=notify tells systemd it is ready (READY=1),
// that it is shutting down (STOPPING=1) or what it is doing (STATUS=...) by
// sending a single datagram to the unix socket named in $NOTIFY_SOCKET.
// The daemon calls Notify once its listener is bound, so "systemctl start"
// returns only when the API actually answers.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// EnvSocket is the environment variable systemd sets to the notification
// socket's address.
const EnvSocket = "NOTIFY_SOCKET"

// Common states. Several may be combined in one message, one per line.
const (
	// Ready tells systemd that start-up is finished.
	Ready = "READY=1"
	// Stopping tells systemd that the service is beginning its shutdown.
	Stopping = "STOPPING=1"
	// Reloading tells systemd that the service is reloading its configuration.
	Reloading = "RELOADING=1"
)

// writeTimeout bounds a send: the socket is local and datagrams are never
// queued for long, but a wedged manager must not hang the daemon's shutdown.
const writeTimeout = 5 * time.Second

// ErrEmptySocket is returned by NotifySocket when no socket address is given.
var ErrEmptySocket = errors.New("sdnotify: empty socket address")

// Notifier sends notifications to one socket. The zero value has no socket
// and reports nothing, which is what a daemon started outside systemd wants.
type Notifier struct {
	// Socket is the unixgram address: a filesystem path, or an abstract
	// socket name starting with '@'. Empty disables notifications.
	Socket string
}

// FromEnv returns a Notifier for the socket named in $NOTIFY_SOCKET (empty
// when the variable is unset, so Notify does nothing).
func FromEnv() Notifier {
	return Notifier{Socket: os.Getenv(EnvSocket)}
}

// Notify sends state as one datagram. It reports sent=false and no error
// when the Notifier has no socket, so callers need not care whether they run
// under systemd.
func (n Notifier) Notify(state string) (sent bool, err error) {
	if n.Socket == "" {
		return false, nil
	}
	if err := NotifySocket(n.Socket, state); err != nil {
		return false, err
	}
	return true, nil
}

// Notify sends state to the socket named in $NOTIFY_SOCKET. It returns
// (false, nil) when the variable is unset. The variable is left in place
// (unlike sd_notify's unset_environment) because the daemon's trainer
// children get a scrubbed environment anyway.
func Notify(state string) (sent bool, err error) {
	return FromEnv().Notify(state)
}

// NotifySocket sends state as one datagram to the unixgram socket at
// socket. A leading '@' names an abstract socket (Linux), as systemd writes
// it in $NOTIFY_SOCKET.
func NotifySocket(socket, state string) error {
	if socket == "" {
		return ErrEmptySocket
	}
	if socket[0] != '/' && socket[0] != '@' {
		// systemd also knows vsock: addresses (VMs); a relative path would
		// depend on the working directory. Neither is what a unit gives us.
		return fmt.Errorf("sdnotify: unsupported socket address %q: want an absolute path or @abstract", socket)
	}
	// No translation for '@': on Linux the net package maps a leading '@'
	// to the abstract namespace's leading NUL byte, as systemd means it.
	addr := &net.UnixAddr{Name: socket, Net: "unixgram"}
	// An unbound sending socket: systemd identifies the sender by the
	// peer credentials (SCM_CREDENTIALS), not by our address.
	conn, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return fmt.Errorf("sdnotify: connect %q: %w", socket, err)
	}
	defer conn.Close()
	if err := conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return fmt.Errorf("sdnotify: set deadline: %w", err)
	}
	n, err := conn.Write([]byte(state))
	if err != nil {
		return fmt.Errorf("sdnotify: send to %q: %w", socket, err)
	}
	if n != len(state) {
		return fmt.Errorf("sdnotify: short write to %q: %d of %d bytes", socket, n, len(state))
	}
	return nil
}
