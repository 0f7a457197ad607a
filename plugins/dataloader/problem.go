package dataloader

import (
	"errors"
	"fmt"
	"strconv"
)

// Kinds of problem; every Problem wraps one of them.
var (
	// ErrInvalid marks a document that is malformed or inconsistent: wrong anywhere.
	ErrInvalid = errors.New("invalid dataloader config")
	// ErrUnsupported marks a value SimpleTuner knows that this trainer does not
	// implement: the document may be kept, but not trained here.
	ErrUnsupported = errors.New("unsupported dataloader setting")
	// ErrIncomplete marks a value training needs that is not filled in yet (a dataset
	// without its folder, as a starter dataloader has). It wraps ErrInvalid: nothing can
	// train it, but it may be stored and completed later.
	ErrIncomplete = fmt.Errorf("%w: a dataset is not filled in", ErrInvalid)
)

// Problem is one thing wrong with a document.
type Problem struct {
	// Dataset is the index of the dataset in the list; -1 for the document as a whole.
	Dataset int
	// Key is the dataset key at fault; "" for the dataset (or document) as a whole.
	Key string
	// Message is a sentence a person can act on; it names the dataset.
	Message string
	// Err is ErrInvalid, ErrUnsupported or ErrIncomplete.
	Err error
}

// Error is the message.
func (p Problem) Error() string { return p.Message }

// Unwrap returns the kind, for errors.Is.
func (p Problem) Unwrap() error { return p.Err }

// Path locates the problem in the document: "datasets[2].resolution", "datasets[2]", or
// "" for the document as a whole.
func (p Problem) Path() string {
	if p.Dataset < 0 {
		return ""
	}
	s := "datasets[" + strconv.Itoa(p.Dataset) + "]"
	if p.Key != "" {
		s += "." + p.Key
	}
	return s
}

// Problems are the problems of one document, in document order.
type Problems []Problem

// Err joins the problems into one error (nil when there are none); errors.Is finds each
// problem's kind.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errors.Join(errs...)
}
