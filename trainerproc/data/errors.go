package data

import (
	"errors"

	"simpletuner/plugins/dataloader"
)

// Sentinel errors; every error this package returns wraps one of them.
var (
	// ErrInvalidConfig marks a dataloader document that is malformed or inconsistent
	// (the contract's dataloader.ErrInvalid), or options of this package that are.
	ErrInvalidConfig = dataloader.ErrInvalid
	// ErrUnsupported marks a value SimpleTuner knows but this trainer does not implement
	// (e.g. type "aws" or caption_strategy "parquet").
	ErrUnsupported = dataloader.ErrUnsupported
	// ErrNoData marks a dataset (or the whole loader) that ends up with no usable samples or
	// no complete batch.
	ErrNoData = errors.New("no usable training data")
	// ErrBadImage marks an image that cannot be decoded or is refused (corrupt, truncated,
	// absurdly large). Such images are skipped with a Warning, never fatal on their own.
	ErrBadImage = errors.New("unusable image")
	// ErrCache marks a cache file that is unreadable or corrupt.
	ErrCache = errors.New("cache error")
	// ErrNotCached marks a latent or text embedding that the training loop asks for but the
	// cache does not hold: the cache was not built for it, or the entry was deleted since.
	ErrNotCached = errors.New("not in the cache")
	// ErrState marks sampler state that cannot be restored.
	ErrState = errors.New("invalid sampler state")
)
