package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"

	"simpletuner/internal/clihelp"
	"simpletuner/store"
	"simpletuner/supervisor/auth"
)

const adminUsage = `Usage: simpletuner admin reset [flags]

Offline recovery of administrator access, for when every administrator is locked out
(deactivated, demoted, or the password forgotten). Stop the daemon first and run this as
the daemon's user: it opens the state directory directly and refuses while a daemon holds
it.

It makes the account an active administrator with a new password and ends its sessions;
an account that does not exist is created. The new password is generated and printed
once, or read from standard input with --password-stdin (never from the command line,
where other users see it in the process list).

Flags:
`

// adminCmd runs `simpletuner admin …`; stdin is read for --password-stdin.
// `admin` has one subcommand, reset, so `admin --help` and `admin reset --help` print the
// same usage.
func adminCmd(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	cfg, fs, err := commandFlags("admin reset", stderr, getenv)
	if err != nil {
		return 2
	}
	dir := fs.String("state-dir", cfg.StateDir, "the daemon's state directory (env SIMPLETUNER_STATE_DIR)")
	username := fs.String("username", "", "account to reset, by username or e-mail (default: the administrator setup created, or a new account \"admin\" if there never was one)")
	email := fs.String("email", "", "e-mail of the account when it has to be created (default: USERNAME@localhost)")
	fromStdin := fs.Bool("password-stdin", false, "read the new password from the first line of standard input instead of generating one")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), adminUsage)
		printFlags(fs.Output(), fs)
	}
	switch {
	case len(args) > 0 && args[0] != "reset" && (args[0] == "help" || clihelp.Asked(args)):
		args = []string{"reset", "--help"}
	case len(args) == 0 || args[0] != "reset":
		if len(args) > 0 {
			fmt.Fprintf(stderr, "simpletuner admin: unknown command %q\n\n", args[0])
		}
		fs.Usage()
		return 2
	}
	if code, stop := parseFlagsOnly(fs, args[1:], "admin reset", stdout); stop {
		return code
	}
	if err := adminReset(*dir, *username, *email, *fromStdin, stdin, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "simpletuner admin reset:", err)
		return 1
	}
	return 0
}

func adminReset(dir, username, email string, fromStdin bool, stdin io.Reader, stdout, stderr io.Writer) error {
	if err := checkStateOwner(dir); err != nil {
		return err
	}
	password, generated := "", false
	if fromStdin {
		if f, ok := stdin.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				return errors.New("--password-stdin reads a password piped in (… | simpletuner admin reset --password-stdin), not typed on a terminal where it would show; leave it out to have one generated")
			}
		}
		line, err := bufio.NewReaderSize(stdin, auth.MaxPasswordLen+2).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read the password from standard input: %w", err)
		}
		password = strings.TrimRight(line, "\r\n")
	} else {
		b := make([]byte, 18)
		_, _ = rand.Read(b)
		password, generated = base64.RawURLEncoding.EncodeToString(b), true
	}
	// Like the daemon: nothing written under the state directory is readable by others.
	syscall.Umask(0o077)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	db, err := store.Open(dir, log)
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("%s is in use by a running daemon: stop it first (systemctl stop simpletuner), then run this again", dir)
	}
	if err != nil {
		return err
	}
	defer db.Close()
	as, err := auth.NewService(db, log, auth.Options{})
	if err != nil {
		return err
	}
	res, err := as.ResetAdmin(context.Background(), username, email, password)
	if err != nil {
		return errors.New(auth.Message(err))
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("close %s: %w", dir, err)
	}
	what := "is an active administrator again with a new password"
	if res.Created {
		what = "was created as an administrator"
	}
	fmt.Fprintf(stdout, "Account %q (id %d) %s; %d session(s) ended. Start the daemon and log in.\n", res.User.Username, res.User.ID, what, res.Sessions)
	if generated {
		fmt.Fprintf(stdout, "Password (shown once, change it after logging in): %s\n", password)
	}
	return nil
}

// checkStateOwner refuses a state directory that is missing or belongs to another user:
// files this command created there as root would be unreadable to the daemon's user.
func checkStateOwner(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("state directory: %w (give the daemon's --state-dir)", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("state directory %s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s belongs to uid %d, not to you (uid %d): run this as the daemon's user, e.g. sudo -u <that user> simpletuner admin reset …", dir, st.Uid, os.Geteuid())
	}
	return nil
}
