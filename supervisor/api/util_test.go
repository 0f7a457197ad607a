package api

import (
	"strconv"

	"simpletuner/store"
)

type storeUser = store.User

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
