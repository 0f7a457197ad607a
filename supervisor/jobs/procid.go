package jobs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procState is what /proc says about a recorded process.
type procState int

const (
	procGone  procState = iota // no such process, or a zombie: it has exited
	procOurs                   // same pid, same start time, same boot: the process we launched
	procOther                  // the pid now belongs to another process (reused), or another boot
)

func (p procState) String() string {
	return [...]string{"gone", "ours", "other"}[p]
}

// procIdentity reads a process's start time (clock ticks since boot) and state letter.
func procIdentity(pid int) (start uint64, state byte, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name is in parentheses and may itself contain ") ": split at the last.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(b[i+2:]))
	// fields[0] is the state (field 3); starttime is field 22, i.e. fields[19].
	if len(fields) < 20 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	start, err = strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat starttime: %w", pid, err)
	}
	return start, fields[0][0], nil
}

// bootID identifies the current boot; pids and start times mean nothing across boots.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// classifyProc compares a recorded identity with what /proc says now.
func classifyProc(pid int, start uint64, boot, currentBoot string) procState {
	if pid <= 0 {
		return procGone
	}
	if boot != "" && currentBoot != "" && boot != currentBoot {
		return procOther
	}
	s, state, err := procIdentity(pid)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return procGone
		}
		return procOther
	}
	if s != start {
		return procOther
	}
	if state == 'Z' || state == 'X' {
		return procGone
	}
	return procOurs
}
