package jobs

import "os"

func pidSelf() int { return os.Getpid() }
