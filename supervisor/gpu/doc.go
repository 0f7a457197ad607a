// Package gpu is the daemon's view of the machine's GPUs and the local allocation
// decision.
//
// It has three layers, after nomad-device-nvidia's split between a raw NVML driver
// and a domain client:
//
//   - Inventory lists the GPUs. NVML is the real one, through NVIDIA's go-nvml: cgo, but
//     libnvidia-ml.so.1 is dlopened at run time, so the daemon starts on machines without
//     any NVIDIA library. Open falls back to None (zero GPUs, with the reason) when the
//     library or the driver is missing; it never panics. The static build (tag "nonvml",
//     CGO_ENABLED=0) has no NVML at all and always reports zero GPUs. Fake is an in-memory
//     inventory for tests, with fixtures modelled on real H100 machines.
//   - Decide is the allocation decision of docs/compatibility.md §11 as a pure function of
//     (request, inventory, holdings, limits): start on these GPU UUIDs, start on the CPU
//     (the host has no GPUs), queue (with SimpleTuner's reason) or reject (the request
//     can never be met on this machine, e.g. more GPUs than exist).
//   - Ledger records which GPU UUIDs each running job holds and applies Decide under its
//     mutex, so concurrent submits for the last free GPU cannot both win. Allocator puts
//     an Inventory in front of a Ledger.
//
// GPUs are keyed by UUID, never by index: NVML and CUDA may number devices differently,
// and indexes shift when a device disappears. Launched trainers therefore get
// CUDA_VISIBLE_DEVICES=GPU-<uuid>,… and CUDA_DEVICE_ORDER=PCI_BUS_ID (LaunchEnv).
// Indexes are kept for display and for the API's preferred-device lists.
package gpu
