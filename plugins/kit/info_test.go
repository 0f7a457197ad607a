package kit_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/kit/kittest"
)

// TestQueryInfoCarriesTheFamilies: plugins.QueryInfo launches a trainer, reads its Info
// over the contract (every family field, resolutions included) and shuts it down; a
// trainer that cannot start is an error, not a hang.
func TestQueryInfoCarriesTheFamilies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sock := t.TempDir()
	info, err := plugins.QueryInfo(ctx, plugins.LaunchConfig{Path: os.Args[0], SocketDir: sock,
		Env: []string{asPlugin + "=1", kittest.EnvFamilies + "=pixart_sigma:900M-1024-v0.6,600M-512;flux"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []plugins.Family{
		{Name: "dit", Flavours: []string{"tiny", "small", "base", "xl"}, DefaultFlavour: "tiny", DefaultResolution: 16},
		{Name: "pixart_sigma", Flavours: []string{"900M-1024-v0.6", "600M-512"}, DefaultFlavour: "900M-1024-v0.6"},
		{Name: "flux"},
	}
	if !slices.EqualFunc(info.Families, want, func(a, b plugins.Family) bool {
		return a.Name == b.Name && slices.Equal(a.Flavours, b.Flavours) && a.DefaultFlavour == b.DefaultFlavour &&
			a.MinResolution == b.MinResolution && a.DefaultResolution == b.DefaultResolution
	}) {
		t.Fatalf("families %+v, want %+v", info.Families, want)
	}
	if opts := plugins.OptionFamilies(info.Families); len(opts) != 3 || opts[0].DefaultResolution != 16 || opts[1].DefaultFlavour != "900M-1024-v0.6" {
		t.Fatalf("option families %+v", opts)
	}
	_, err = plugins.QueryInfo(ctx, plugins.LaunchConfig{Path: filepath.Join(sock, "missing"), SocketDir: sock})
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("missing trainer: %v", err)
	}
}
