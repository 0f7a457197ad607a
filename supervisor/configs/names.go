package configs

import (
	"regexp"
	"simpletuner/internal/errmsg"
	"strings"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// CleanName validates a configuration name as SimpleTuner does (a trailing ".json" is
// stripped) and also refuses "." and "..", which the pattern allows but which would name
// the configs dir itself or its parent.
func CleanName(name string) (string, error) {
	name = strings.TrimSpace(name)
	name = strings.TrimSuffix(name, ".json")
	if name == "" {
		return "", errmsg.New(ErrInvalid, "Configuration name is required")
	}
	if !nameRE.MatchString(name) || name == "." || name == ".." || len(name) > 200 {
		return "", errmsg.New(ErrInvalid, "Configuration name may only contain letters, numbers, '.', '_' or '-'")
	}
	return name, nil
}
