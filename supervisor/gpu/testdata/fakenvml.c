// fakenvml.c: a stand-in for libnvidia-ml.so.1, compiled with cc -shared -fPIC by
// TestNVMLFakeLibrary (and by black-box tests that give processes fake GPUs through
// SIMPLETUNER_NVML_LIBRARY), so that the go-nvml binding is exercised through the real C
// ABI on a machine without an NVIDIA driver. Types and signatures are transcribed from
// nvml.h (go-nvml v0.13.4-1, pkg/nvml/nvml.h); the static asserts pin the layouts go-nvml
// uses. It exports every function the daemon makes go-nvml call (supervisor/gpu's
// nvmlSymbols): go-nvml binds them at first call, and a missing one ends the process.
//
// Behaviour: FAKE_NVML_COUNT H100s (default 2, at most 16) with the UUIDs and bus ids of
// gpu.FakeH100; device i has (i+1) GiB in use. Device 1 reports utilization as
// NOT_SUPPORTED (as MIG devices do), the others 42% / 17%; device 1's temperature is
// NOT_SUPPORTED too, device i's otherwise (31+i) degrees C. FAKE_NVML_INIT_RC, when set,
// is returned by nvmlInit_v2. FAKE_NVML_LOST=1 makes device 0's memory query return
// NVML_ERROR_GPU_IS_LOST.
#include <stdio.h>
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

#define MAX_DEVICES 16

static int initialised;
static struct nvmlDevice_st { int index; } devices[MAX_DEVICES];

// count is FAKE_NVML_COUNT, read at every call so that tests can change it.
static unsigned int count(void) {
	const char *n = getenv("FAKE_NVML_COUNT");
	if (n == NULL || *n == '\0') return 2;
	int v = atoi(n);
	return v < 0 ? 0 : v > MAX_DEVICES ? MAX_DEVICES : (unsigned int)v;
}

// uuid and busid format what gpu.FakeUUID and gpu.FakeH100 return for device i.
static void uuid(char out[64], int i) {
	snprintf(out, 64, "GPU-%08x-5e2b-4f0c-9a6d-%012llx", 0x3c1d7a00 + i * 0x11, 0xb4e85f2c0000ULL + (unsigned long long)i);
}

static void busid(char out[32], int i) {
	static const char *dgx[8] = {"00000000:18:00.0", "00000000:2A:00.0", "00000000:3A:00.0", "00000000:5D:00.0",
		"00000000:9A:00.0", "00000000:AB:00.0", "00000000:BA:00.0", "00000000:DB:00.0"};
	if (i < 8) snprintf(out, 32, "%s", dgx[i]);
	else snprintf(out, 32, "00000000:%02X:00.0", 0xE0 + i - 8);
}

static nvmlReturn_t copy(char *dst, unsigned int length, const char *src) {
	if (dst == NULL) return ERR_INVALID_ARGUMENT;
	if (strlen(src) + 1 > length) return ERR_INSUFFICIENT_SIZE;
	strcpy(dst, src);
	return SUCCESS;
}

static int valid(nvmlDevice_t d) {
	return initialised && d >= &devices[0] && d < &devices[MAX_DEVICES] && (unsigned int)d->index < count();
}

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

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount) {
	if (!initialised) return ERR_UNINITIALIZED;
	if (deviceCount == NULL) return ERR_INVALID_ARGUMENT;
	*deviceCount = count();
	return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
	if (!initialised) return ERR_UNINITIALIZED;
	if (index >= count() || device == NULL) return ERR_INVALID_ARGUMENT;
	devices[index].index = (int)index;
	*device = &devices[index];
	return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *out, unsigned int length) {
	if (!valid(device)) return ERR_INVALID_ARGUMENT;
	if (length < 96) return ERR_INSUFFICIENT_SIZE; // the Go side must pass NVML_DEVICE_UUID_V2_BUFFER_SIZE
	char s[64];
	uuid(s, device->index);
	return copy(out, length, s);
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

// nvmlTemperatureSensors_t is an enum; NVML_TEMPERATURE_GPU is 0.
nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensorType, unsigned int *temp) {
	if (!valid(device) || temp == NULL || sensorType != 0) return ERR_INVALID_ARGUMENT;
	if (device->index == 1) return ERR_NOT_SUPPORTED;
	*temp = 31 + (unsigned int)device->index;
	return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) {
	if (!valid(device) || pci == NULL) return ERR_INVALID_ARGUMENT;
	memset(pci, 0, sizeof *pci);
	char s[32];
	busid(s, device->index);
	strcpy(pci->busIdLegacy, s + 4);
	pci->bus = (unsigned int)strtoul(s + 9, NULL, 16);
	pci->pciDeviceId = 0x233010de;
	pci->pciSubSystemId = 0x16c110de;
	return copy(pci->busId, sizeof pci->busId, s);
}
