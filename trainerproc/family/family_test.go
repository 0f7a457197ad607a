package family_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"simpletuner/plugins"
	"simpletuner/trainerproc/family"
	"simpletuner/trainerproc/family/dit"
)

// named is a family that only has a name: enough for the registry.
type named struct {
	family.Family
	name string
}

func (n named) Describe() plugins.Family { return plugins.Family{Name: n.name} }

func TestRegistry(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fams  []family.Family
		err   error
		names []string
	}{
		{"dit alone", []family.Family{dit.Family{}}, nil, []string{"dit"}},
		{"sorted by name", []family.Family{named{name: "zeta"}, dit.Family{}, named{name: "alpha"}}, nil, []string{"alpha", "dit", "zeta"}},
		{"twice", []family.Family{dit.Family{}, named{name: "dit"}}, family.ErrInvalidRegistry, nil},
		{"no name", []family.Family{named{}}, family.ErrInvalidRegistry, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := family.NewRegistry(tc.fams...)
			if !errors.Is(err, tc.err) {
				t.Fatalf("NewRegistry: %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			var got []string
			for _, f := range r.Describe() {
				got = append(got, f.Name)
			}
			if !slices.Equal(got, tc.names) {
				t.Fatalf("families %v, want %v", got, tc.names)
			}
			for _, n := range tc.names {
				if f, err := r.Get(n); err != nil || f.Describe().Name != n {
					t.Fatalf("Get(%q) = %v, %v", n, f, err)
				}
			}
			_, err = r.Get("pixart_sigma")
			if !errors.Is(err, family.ErrUnknownFamily) || !strings.Contains(err.Error(), "(this trainer trains: "+strings.Join(tc.names, ", ")+")") {
				t.Fatalf("unknown family: %v", err)
			}
		})
	}
}

func TestCachesMissing(t *testing.T) {
	pipeline := family.Caches{Pixels: true, Tokens: true}
	for _, tc := range []struct {
		name string
		want family.Caches
		miss []string
	}{
		{"dit", family.Caches{Pixels: true, Tokens: true}, nil},
		{"pixels only", family.Caches{Pixels: true}, nil},
		{"latent family", family.Caches{Latents: true, TextEmbeds: true}, []string{"latents", "text embeddings"}},
		{"latents beside pixels", family.Caches{Pixels: true, Latents: true}, []string{"latents"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.want.Missing(pipeline); !slices.Equal(got, tc.miss) {
				t.Fatalf("Missing = %v, want %v", got, tc.miss)
			}
		})
	}
}
