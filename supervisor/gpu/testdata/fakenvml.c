// fakenvml.c: a stand-in for libnvidia-ml.so.1, compiled by TestNVMLFakeLibrary
// (cc -shared -fPIC) so that the purego binding is exercised through the real C ABI on
// a machine without an NVIDIA driver. Types and signatures are transcribed from nvml.h
// (go-nvml v0.13.4-1, gen/nvml/nvml.h); the static asserts pin the layouts the Go side
// mirrors in nvml.go.
//
// Behaviour: two H100s. Device 1 reports utilization as NOT_SUPPORTED (as MIG devices
// do). FAKE_NVML_INIT_RC, when set, is returned by nvmlInit_v2. FAKE_NVML_LOST=1 makes
// device 0's memory query return NVML_ERROR_GPU_IS_LOST.
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct {
	char busIdLegacy[16];
	unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
	char busId[32];
} nvmlPciInfo_t;

_Static_assert(sizeof(nvmlReturn_t) == 4, "nvmlReturn_t");
_Static_assert(sizeof(nvmlMemory_t) == 24, "nvmlMemory_t");
_Static_assert(sizeof(nvmlUtilization_t) == 8, "nvmlUtilization_t");
_Static_assert(sizeof(nvmlPciInfo_t) == 68, "nvmlPciInfo_t");

#define SUCCESS 0
#define ERR_UNINITIALIZED 1
#define ERR_INVALID_ARGUMENT 2
#define ERR_NOT_SUPPORTED 3
#define ERR_INSUFFICIENT_SIZE 7
#define ERR_GPU_IS_LOST 15

static int initialised;
static struct nvmlDevice_st { int index; } devices[2] = {{0}, {1}};
static const char *uuids[2] = {"GPU-3c1d7a00-5e2b-4f0c-9a6d-b4e85f2c0000", "GPU-3c1d7a11-5e2b-4f0c-9a6d-b4e85f2c0001"};
static const char *busids[2] = {"00000000:18:00.0", "00000000:2A:00.0"};

static nvmlReturn_t copy(char *dst, unsigned int length, const char *src) {
	if (dst == NULL) return ERR_INVALID_ARGUMENT;
	if (strlen(src) + 1 > length) return ERR_INSUFFICIENT_SIZE;
	strcpy(dst, src);
	return SUCCESS;
}

static int valid(nvmlDevice_t d) { return initialised && (d == &devices[0] || d == &devices[1]); }

nvmlReturn_t nvmlInit_v2(void) {
	const char *rc = getenv("FAKE_NVML_INIT_RC");
	if (rc != NULL && *rc != '\0') return atoi(rc);
	initialised++;
	return SUCCESS;
}

nvmlReturn_t nvmlShutdown(void) {
	if (!initialised) return ERR_UNINITIALIZED;
	initialised--;
	return SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t r) { return r == SUCCESS ? "Success" : "Fake Error"; }

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
	return copy(version, length, "550.127.08");
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
	if (!initialised) return ERR_UNINITIALIZED;
	*count = 2;
	return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
	if (!initialised) return ERR_UNINITIALIZED;
	if (index >= 2 || device == NULL) return ERR_INVALID_ARGUMENT;
	*device = &devices[index];
	return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
	if (!valid(device)) return ERR_INVALID_ARGUMENT;
	if (length < 96) return ERR_INSUFFICIENT_SIZE; // the Go side must pass NVML_DEVICE_UUID_V2_BUFFER_SIZE
	return copy(uuid, length, uuids[device->index]);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
	if (!valid(device)) return ERR_INVALID_ARGUMENT;
	if (length < 96) return ERR_INSUFFICIENT_SIZE; // NVML_DEVICE_NAME_V2_BUFFER_SIZE
	return copy(name, length, "NVIDIA H100 80GB HBM3");
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
	if (!valid(device) || memory == NULL) return ERR_INVALID_ARGUMENT;
	const char *lost = getenv("FAKE_NVML_LOST");
	if (device->index == 0 && lost != NULL && strcmp(lost, "1") == 0) return ERR_GPU_IS_LOST;
	memory->total = 81559ULL << 20;
	memory->used = (unsigned long long)(device->index + 1) << 30;
	memory->free = memory->total - memory->used;
	return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization) {
	if (!valid(device) || utilization == NULL) return ERR_INVALID_ARGUMENT;
	if (device->index == 1) return ERR_NOT_SUPPORTED;
	utilization->gpu = 42;
	utilization->memory = 17;
	return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) {
	if (!valid(device) || pci == NULL) return ERR_INVALID_ARGUMENT;
	memset(pci, 0, sizeof *pci);
	strcpy(pci->busIdLegacy, "0000:18:00.0");
	pci->bus = device->index == 0 ? 0x18 : 0x2a;
	pci->pciDeviceId = 0x233010de;
	pci->pciSubSystemId = 0x16c110de;
	return copy(pci->busId, sizeof pci->busId, busids[device->index]);
}
