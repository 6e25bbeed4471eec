/*
 * A stand-in for libnvidia-ml.so: the NVML calls gpu-share makes, answering for the GPUs that
 * FAKE_NVML_GPUS describes, one per ';', fields separated by ',':
 *     uuid,name,memory_total_bytes,memory_free_bytes,pci_bus_id,minor
 * FAKE_NVML_INIT_ERROR=<code> makes nvmlInit fail with that NVML return code.
 * Built by the tests with `cc -shared -fPIC`; loaded by path through `nvml.library`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define MAX_GPUS 16

struct fake_gpu {
    char uuid[96];
    char name[96];
    unsigned long long total;
    unsigned long long free;
    char bus_id[32];
    unsigned int minor;
};

typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

static struct fake_gpu gpus[MAX_GPUS];
static unsigned int gpu_count;
static int initialised;

static void parse_gpus(void) {
    const char *spec = getenv("FAKE_NVML_GPUS");
    gpu_count = 0;
    if (!spec)
        return;
    char *copy = strdup(spec), *save_gpu = NULL;
    for (char *g = strtok_r(copy, ";", &save_gpu); g && gpu_count < MAX_GPUS;
         g = strtok_r(NULL, ";", &save_gpu)) {
        struct fake_gpu *d = &gpus[gpu_count];
        memset(d, 0, sizeof *d);
        char *save = NULL, *f[6] = {0};
        int n = 0;
        for (char *t = strtok_r(g, ",", &save); t && n < 6; t = strtok_r(NULL, ",", &save))
            f[n++] = t;
        if (n < 6)
            continue;
        snprintf(d->uuid, sizeof d->uuid, "%s", f[0]);
        snprintf(d->name, sizeof d->name, "%s", f[1]);
        d->total = strtoull(f[2], NULL, 10);
        d->free = strtoull(f[3], NULL, 10);
        snprintf(d->bus_id, sizeof d->bus_id, "%s", f[4]);
        d->minor = (unsigned int)strtoul(f[5], NULL, 10);
        gpu_count++;
    }
    free(copy);
}

int nvmlInit_v2(void) {
    const char *fail = getenv("FAKE_NVML_INIT_ERROR");
    if (fail && *fail)
        return atoi(fail);
    parse_gpus();
    initialised = 1;
    return NVML_SUCCESS;
}

int nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    return nvmlInit_v2();
}

int nvmlShutdown(void) {
    initialised = 0;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(int result) {
    return result == NVML_SUCCESS ? "Success" : "Fake NVML error";
}

int nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    if (!version || length < 10)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    snprintf(version, length, "535.183.01");
    return NVML_SUCCESS;
}

int nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialised)
        return NVML_ERROR_UNINITIALIZED;
    if (!count)
        return NVML_ERROR_INVALID_ARGUMENT;
    *count = gpu_count;
    return NVML_SUCCESS;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device) {
    if (!initialised)
        return NVML_ERROR_UNINITIALIZED;
    if (index >= gpu_count || !device)
        return NVML_ERROR_INVALID_ARGUMENT;
    *device = &gpus[index];
    return NVML_SUCCESS;
}

static int copy_string(const char *from, char *to, unsigned int length) {
    if (!to || strlen(from) + 1 > length)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(to, from, strlen(from) + 1);
    return NVML_SUCCESS;
}

int nvmlDeviceGetUUID(void *device, char *uuid, unsigned int length) {
    if (!device)
        return NVML_ERROR_INVALID_ARGUMENT;
    return copy_string(((struct fake_gpu *)device)->uuid, uuid, length);
}

int nvmlDeviceGetName(void *device, char *name, unsigned int length) {
    if (!device)
        return NVML_ERROR_INVALID_ARGUMENT;
    return copy_string(((struct fake_gpu *)device)->name, name, length);
}

int nvmlDeviceGetMinorNumber(void *device, unsigned int *minor) {
    if (!device || !minor)
        return NVML_ERROR_INVALID_ARGUMENT;
    *minor = ((struct fake_gpu *)device)->minor;
    return NVML_SUCCESS;
}

int nvmlDeviceGetMemoryInfo_v2(void *device, nvmlMemory_v2_t *memory) {
    if (!device || !memory)
        return NVML_ERROR_INVALID_ARGUMENT;
    struct fake_gpu *d = device;
    memory->total = d->total;
    memory->free = d->free;
    memory->reserved = 0;
    memory->used = d->total - d->free;
    return NVML_SUCCESS;
}

int nvmlDeviceGetPciInfo_v3(void *device, nvmlPciInfo_t *pci) {
    if (!device || !pci)
        return NVML_ERROR_INVALID_ARGUMENT;
    struct fake_gpu *d = device;
    memset(pci, 0, sizeof *pci);
    snprintf(pci->busId, sizeof pci->busId, "%s", d->bus_id);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%.15s", d->bus_id);
    pci->pciDeviceId = 0x1eb810de;
    return NVML_SUCCESS;
}
