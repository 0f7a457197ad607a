package plugins

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// toStatus maps a trainer's error to a gRPC status at the server boundary.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, ErrAlreadyStarted):
		code = codes.AlreadyExists
	case errors.Is(err, ErrNotStarted), errors.Is(err, ErrJobEnded):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrInvalidConfig):
		code = codes.InvalidArgument
	case errors.Is(err, ErrUnsupported):
		code = codes.Unimplemented
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}

// fromStatus maps a gRPC error back to the contract's sentinels at the client boundary.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	var sentinel error
	switch st.Code() {
	case codes.AlreadyExists:
		sentinel = ErrAlreadyStarted
	case codes.FailedPrecondition:
		sentinel = ErrJobEnded
		if strings.Contains(st.Message(), ErrNotStarted.Error()) {
			sentinel = ErrNotStarted
		}
	case codes.InvalidArgument:
		sentinel = ErrInvalidConfig
	case codes.Unimplemented:
		sentinel = ErrUnsupported
	case codes.Unavailable:
		sentinel = ErrTrainerGone
	case codes.Canceled:
		sentinel = context.Canceled
	case codes.DeadlineExceeded:
		sentinel = context.DeadlineExceeded
	default:
		return fmt.Errorf("trainer: %s", st.Message())
	}
	return fmt.Errorf("%w (trainer: %s)", sentinel, st.Message())
}
