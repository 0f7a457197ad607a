// Package trainerpb is the generated gRPC code of the trainer plugin protocol
// (trainer.proto). Do not edit the .pb.go files: run `make generate`.
package trainerpb
