//go:build !race

package safetensors

// raceEnabled: the race detector shadows memory, so RSS measurements mean nothing.
const raceEnabled = false
