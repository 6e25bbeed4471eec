/*
 * A stand-in for libnvidia-ml.so: the NVML calls gpu-share makes, answering for the GPUs that
 * FAKE_NVML_GPUS describes, one per ';', fields separated by ',':
 *     uuid,name,memory_total_bytes,memory_free_bytes,pci_bus_id,minor[,util_gpu_pct,util_memory_pct,temperature_c,power_mw]
 * FAKE_NVML_PROCS lists processes using GPUs, one per ';': gpu_index:pid:used_bytes[:graphics]
 * FAKE_NVML_PROC_UTIL lists per-process utilisation samples, one per ';':
 *     gpu_index:pid:sm_util_pct:mem_util_pct[:timestamp_us]
 * (no timestamp: "now", so every call finds it newer than the caller's last-seen timestamp).
 * nvmlDeviceGetProcessUtilization returns those newer than lastSeenTimeStamp, and
 * NVML_ERROR_NOT_FOUND when there are none, as the driver does.
 * FAKE_NVML_PROC_UTIL_ERROR=gpu_index:code[;...] makes that GPU's process utilisation call fail
 * with that NVML return code (3: NOT_SUPPORTED).
 * FAKE_NVML_INIT_ERROR=<code> makes nvmlInit fail with that NVML return code.
 * Built by the tests with `cc -shared -fPIC`; loaded by path through `nvml.library`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define MAX_GPUS 16
#define MAX_PROCS 64

struct fake_gpu {
    char uuid[96];
    char name[96];
    unsigned long long total;
    unsigned long long free;
    char bus_id[32];
    unsigned int minor;
    unsigned int util_gpu, util_memory, temperature, power_mw;
};

struct fake_proc {
    unsigned int gpu, pid, graphics;
    unsigned long long used;
};

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;

struct fake_util {
    unsigned int gpu, pid, sm, mem;
    unsigned long long timestamp; /* 0: now */
};

typedef struct {
    unsigned int pid;
    unsigned long long timeStamp;
    unsigned int smUtil, memUtil, encUtil, decUtil;
} nvmlProcessUtilizationSample_t;

typedef struct {
    unsigned int gpu, memory;
} nvmlUtilization_t;

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
static struct fake_proc procs[MAX_PROCS];
static unsigned int proc_count;
static struct fake_util utils[MAX_PROCS];
static unsigned int util_count;
static int util_error[MAX_GPUS];
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
        char *save = NULL, *f[10] = {0};
        int n = 0;
        for (char *t = strtok_r(g, ",", &save); t && n < 10; t = strtok_r(NULL, ",", &save))
            f[n++] = t;
        if (n < 6)
            continue;
        snprintf(d->uuid, sizeof d->uuid, "%s", f[0]);
        snprintf(d->name, sizeof d->name, "%s", f[1]);
        d->total = strtoull(f[2], NULL, 10);
        d->free = strtoull(f[3], NULL, 10);
        snprintf(d->bus_id, sizeof d->bus_id, "%s", f[4]);
        d->minor = (unsigned int)strtoul(f[5], NULL, 10);
        d->util_gpu = f[6] ? (unsigned int)strtoul(f[6], NULL, 10) : 0;
        d->util_memory = f[7] ? (unsigned int)strtoul(f[7], NULL, 10) : 0;
        d->temperature = f[8] ? (unsigned int)strtoul(f[8], NULL, 10) : 40;
        d->power_mw = f[9] ? (unsigned int)strtoul(f[9], NULL, 10) : 30000;
        gpu_count++;
    }
    free(copy);
}

static void parse_procs(void) {
    const char *spec = getenv("FAKE_NVML_PROCS");
    proc_count = 0;
    if (!spec)
        return;
    char *copy = strdup(spec), *save = NULL;
    for (char *p = strtok_r(copy, ";", &save); p && proc_count < MAX_PROCS;
         p = strtok_r(NULL, ";", &save)) {
        struct fake_proc *d = &procs[proc_count];
        unsigned long long used = 0;
        unsigned int gpu = 0, pid = 0, graphics = 0;
        if (sscanf(p, "%u:%u:%llu:%u", &gpu, &pid, &used, &graphics) < 3)
            continue;
        d->gpu = gpu;
        d->pid = pid;
        d->used = used;
        d->graphics = graphics;
        proc_count++;
    }
    free(copy);
}

static void parse_utils(void) {
    const char *spec = getenv("FAKE_NVML_PROC_UTIL");
    util_count = 0;
    if (spec) {
        char *copy = strdup(spec), *save = NULL;
        for (char *p = strtok_r(copy, ";", &save); p && util_count < MAX_PROCS;
             p = strtok_r(NULL, ";", &save)) {
            struct fake_util *u = &utils[util_count];
            memset(u, 0, sizeof *u);
            if (sscanf(p, "%u:%u:%u:%u:%llu", &u->gpu, &u->pid, &u->sm, &u->mem, &u->timestamp) < 4)
                continue;
            util_count++;
        }
        free(copy);
    }
    memset(util_error, 0, sizeof util_error);
    const char *errors = getenv("FAKE_NVML_PROC_UTIL_ERROR");
    if (errors) {
        char *copy = strdup(errors), *save = NULL;
        for (char *p = strtok_r(copy, ";", &save); p; p = strtok_r(NULL, ";", &save)) {
            unsigned int gpu = 0;
            int code = 0;
            if (sscanf(p, "%u:%d", &gpu, &code) == 2 && gpu < MAX_GPUS)
                util_error[gpu] = code;
        }
        free(copy);
    }
}

int nvmlInit_v2(void) {
    const char *fail = getenv("FAKE_NVML_INIT_ERROR");
    if (fail && *fail)
        return atoi(fail);
    parse_gpus();
    parse_procs();
    parse_utils();
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

int nvmlDeviceGetUtilizationRates(void *device, nvmlUtilization_t *u) {
    if (!device || !u)
        return NVML_ERROR_INVALID_ARGUMENT;
    u->gpu = ((struct fake_gpu *)device)->util_gpu;
    u->memory = ((struct fake_gpu *)device)->util_memory;
    return NVML_SUCCESS;
}

int nvmlDeviceGetTemperature(void *device, int sensor, unsigned int *temp) {
    (void)sensor;
    if (!device || !temp)
        return NVML_ERROR_INVALID_ARGUMENT;
    *temp = ((struct fake_gpu *)device)->temperature;
    return NVML_SUCCESS;
}

int nvmlDeviceGetPowerUsage(void *device, unsigned int *power) {
    if (!device || !power)
        return NVML_ERROR_INVALID_ARGUMENT;
    *power = ((struct fake_gpu *)device)->power_mw;
    return NVML_SUCCESS;
}

/* NVML's two-call protocol: a NULL buffer asks for the count (INSUFFICIENT_SIZE when there
 * are any), then the caller passes a buffer of that size. */
static int running_processes(void *device, unsigned int *count, nvmlProcessInfo_t *infos,
                             unsigned int graphics) {
    if (!device || !count)
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned int index = (unsigned int)((struct fake_gpu *)device - gpus), n = 0;
    for (unsigned int i = 0; i < proc_count; i++)
        if (procs[i].gpu == index && procs[i].graphics == graphics)
            n++;
    if (!infos || *count < n) {
        unsigned int had = *count;
        *count = n;
        return (n == 0 || (infos && had >= n)) ? NVML_SUCCESS : NVML_ERROR_INSUFFICIENT_SIZE;
    }
    unsigned int k = 0;
    for (unsigned int i = 0; i < proc_count; i++) {
        if (procs[i].gpu != index || procs[i].graphics != graphics)
            continue;
        infos[k].pid = procs[i].pid;
        infos[k].usedGpuMemory = procs[i].used;
        infos[k].gpuInstanceId = 0xffffffff;
        infos[k].computeInstanceId = 0xffffffff;
        k++;
    }
    *count = k;
    return NVML_SUCCESS;
}

int nvmlDeviceGetComputeRunningProcesses_v3(void *device, unsigned int *count, nvmlProcessInfo_t *infos) {
    return running_processes(device, count, infos, 0);
}

int nvmlDeviceGetGraphicsRunningProcesses_v3(void *device, unsigned int *count, nvmlProcessInfo_t *infos) {
    return running_processes(device, count, infos, 1);
}

static unsigned long long now_us(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (unsigned long long)tv.tv_sec * 1000000ULL + (unsigned long long)tv.tv_usec;
}

/* The driver's protocol: a NULL buffer asks for the count (INSUFFICIENT_SIZE), then the caller
 * passes a buffer of that size; NOT_FOUND when no sample is newer than lastSeenTimeStamp. */
int nvmlDeviceGetProcessUtilization(void *device, nvmlProcessUtilizationSample_t *utilization,
                                    unsigned int *count, unsigned long long lastSeenTimeStamp) {
    if (!device || !count)
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned int index = (unsigned int)((struct fake_gpu *)device - gpus), n = 0;
    if (util_error[index])
        return util_error[index];
    unsigned long long now = now_us();
    for (unsigned int i = 0; i < util_count; i++) {
        unsigned long long ts = utils[i].timestamp ? utils[i].timestamp : now;
        if (utils[i].gpu == index && ts > lastSeenTimeStamp)
            n++;
    }
    if (n == 0)
        return NVML_ERROR_NOT_FOUND;
    if (!utilization || *count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    unsigned int k = 0;
    for (unsigned int i = 0; i < util_count; i++) {
        unsigned long long ts = utils[i].timestamp ? utils[i].timestamp : now;
        if (utils[i].gpu != index || ts <= lastSeenTimeStamp)
            continue;
        memset(&utilization[k], 0, sizeof utilization[k]);
        utilization[k].pid = utils[i].pid;
        utilization[k].timeStamp = ts;
        utilization[k].smUtil = utils[i].sm;
        utilization[k].memUtil = utils[i].mem;
        k++;
    }
    *count = k;
    return NVML_SUCCESS;
}

/*
 * Xid events (nvmlEventSet*). FAKE_NVML_XID=<minor>:<xid>[,...] are delivered once each, in
 * order, by nvmlEventSetWait_v2 to a set the GPU of that minor is registered in; after them it
 * waits (at most 200 ms) and times out. FAKE_NVML_XID_UNSUPPORTED=<minor>[,...] are GPUs that
 * report no event types.
 */
#include <unistd.h>

#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_TIMEOUT 10
#define FAKE_EVENT_XID_CRITICAL 0x8ULL

typedef struct {
    void *device;
    unsigned long long eventType;
    unsigned long long eventData;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlEventData_t;

struct fake_event_set {
    int registered[MAX_GPUS];
};

static unsigned int xid_delivered;

static int minor_listed(const char *var, unsigned int minor) {
    const char *spec = getenv(var);
    if (!spec)
        return 0;
    char *copy = strdup(spec), *save = NULL;
    int found = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if ((unsigned int)strtoul(t, NULL, 10) == minor)
            found = 1;
    free(copy);
    return found;
}

int nvmlEventSetCreate(void **set) {
    if (!initialised)
        return NVML_ERROR_UNINITIALIZED;
    if (!set)
        return NVML_ERROR_INVALID_ARGUMENT;
    *set = calloc(1, sizeof(struct fake_event_set));
    return NVML_SUCCESS;
}

int nvmlEventSetFree(void *set) {
    free(set);
    return NVML_SUCCESS;
}

int nvmlDeviceGetSupportedEventTypes(void *device, unsigned long long *types) {
    struct fake_gpu *d = device;
    if (!d || !types)
        return NVML_ERROR_INVALID_ARGUMENT;
    *types = minor_listed("FAKE_NVML_XID_UNSUPPORTED", d->minor) ? 0 : FAKE_EVENT_XID_CRITICAL;
    return NVML_SUCCESS;
}

int nvmlDeviceRegisterEvents(void *device, unsigned long long types, void *set) {
    struct fake_gpu *d = device;
    struct fake_event_set *s = set;
    if (!d || !s)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (minor_listed("FAKE_NVML_XID_UNSUPPORTED", d->minor) || !(types & FAKE_EVENT_XID_CRITICAL))
        return NVML_ERROR_NOT_SUPPORTED;
    s->registered[d - gpus] = 1;
    return NVML_SUCCESS;
}

int nvmlDeviceGetIndex(void *device, unsigned int *index) {
    struct fake_gpu *d = device;
    if (!d || !index)
        return NVML_ERROR_INVALID_ARGUMENT;
    *index = (unsigned int)(d - gpus);
    return NVML_SUCCESS;
}

/* The next undelivered FAKE_NVML_XID entry, as (minor, xid); 0 when there is none. */
static int next_xid(unsigned int *minor, unsigned long long *xid) {
    const char *spec = getenv("FAKE_NVML_XID");
    if (!spec)
        return 0;
    char *copy = strdup(spec), *save = NULL;
    unsigned int n = 0;
    int found = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save), n++) {
        if (n == xid_delivered && sscanf(t, "%u:%llu", minor, xid) == 2) {
            found = 1;
            break;
        }
    }
    free(copy);
    return found;
}

int nvmlEventSetWait_v2(void *set, nvmlEventData_t *data, unsigned int timeout_ms) {
    struct fake_event_set *s = set;
    unsigned int minor;
    unsigned long long xid;
    if (!s || !data)
        return NVML_ERROR_INVALID_ARGUMENT;
    while (next_xid(&minor, &xid)) {
        xid_delivered++;
        for (unsigned int i = 0; i < gpu_count; i++) {
            if (gpus[i].minor == minor && s->registered[i]) {
                memset(data, 0, sizeof *data);
                data->device = &gpus[i];
                data->eventType = FAKE_EVENT_XID_CRITICAL;
                data->eventData = xid;
                data->gpuInstanceId = 0xFFFFFFFF;
                data->computeInstanceId = 0xFFFFFFFF;
                return NVML_SUCCESS;
            }
        }
    }
    usleep((timeout_ms < 200 ? timeout_ms : 200) * 1000);
    return NVML_ERROR_TIMEOUT;
}
