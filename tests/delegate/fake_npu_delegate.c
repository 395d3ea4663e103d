/* A minimal TFLite external delegate ("fake NPU") for the inference tests.
 *
 * Implements the external-delegate plugin ABI that tflite_runtime's load_delegate() calls
 * (tensorflow/lite/delegates/external/external_delegate_interface.h):
 *   tflite_plugin_create_delegate(keys, values, n, report_error) -> TfLiteDelegate*
 *   tflite_plugin_destroy_delegate(TfLiteDelegate*)
 *
 * Its Prepare claims every node whose builtin code equals option `claim` (default 22, RESHAPE)
 * and runs them itself: a RESHAPE is a byte copy, so the results are exactly the CPU's and the
 * tests can compare them. It fails on demand, like a USB accelerator that is unplugged or hangs:
 *   fail_file=PATH   while PATH exists, the delegate kernel's invoke returns kTfLiteError
 *   hang_file=PATH   while PATH exists, invoke hangs (until PATH is removed, at most hang_ms,
 *                    default 2000) before copying; fake_npu_hanging() counts invokes hanging now
 *   fail_create=1    tflite_plugin_create_delegate returns NULL (load_delegate raises)
 *   crash_file=PATH  while PATH exists, invoke kills the process with SIGSEGV (a driver bug)
 * fake_npu_invocations() counts kernel invocations so a test can prove the delegate ran.
 *
 * No TensorFlow headers are available here, so the few structs used are declared below with
 * the field order of tensorflow/lite/core/c/common.h (TF 2.14). TFLite only ever appends fields
 * to these structs; TfLiteRegistration is passed by value, so it carries zeroed spare room for
 * the fields newer runtimes append (registration_external, async_kernel, inplace_operator).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
typedef struct { int size; int data[]; } TfLiteIntArray;

/* The full TF 2.14 layout: context->tensors is an array of these, so its size is the stride.
 * context->GetTensor would avoid depending on it, but the full runtime leaves it NULL (TFLM only). */
typedef struct {
  int type;
  void *data;
  TfLiteIntArray *dims;
  struct { float scale; int32_t zero_point; } params;
  int allocation_type;
  size_t bytes;
  const void *allocation;
  const char *name;
  void *delegate;
  int buffer_handle;
  bool data_is_stale;
  bool is_variable;
  struct { int type; void *params; } quantization;
  void *sparsity;
  const TfLiteIntArray *dims_signature;
} TfLiteTensor;

typedef struct {
  TfLiteIntArray *inputs;
  TfLiteIntArray *outputs;
  TfLiteIntArray *intermediates;
  TfLiteIntArray *temporaries;
  void *user_data; /* what the kernel's init returned: here the delegate's options */
  /* more fields follow; only reached through pointers */
} TfLiteNode;

struct TfLiteContext;
struct TfLiteDelegate;

typedef struct TfLiteRegistration {
  void *(*init)(struct TfLiteContext *, const char *, size_t);
  void (*free)(struct TfLiteContext *, void *);
  TfLiteStatus (*prepare)(struct TfLiteContext *, TfLiteNode *);
  TfLiteStatus (*invoke)(struct TfLiteContext *, TfLiteNode *);
  const char *(*profiling_string)(const struct TfLiteContext *, const TfLiteNode *);
  int32_t builtin_code;
  const char *custom_name;
  int version;
  char reserved[64]; /* zero: no external registration, no async kernel, not in-place */
} TfLiteRegistration;

typedef struct TfLiteContext {
  size_t tensors_size;
  TfLiteStatus (*GetExecutionPlan)(struct TfLiteContext *, TfLiteIntArray **);
  TfLiteTensor *tensors;
  void *impl_;
  TfLiteStatus (*ResizeTensor)(struct TfLiteContext *, TfLiteTensor *, TfLiteIntArray *);
  void (*ReportError)(struct TfLiteContext *, const char *, ...);
  TfLiteStatus (*AddTensors)(struct TfLiteContext *, int, int *);
  TfLiteStatus (*GetNodeAndRegistration)(struct TfLiteContext *, int, TfLiteNode **, TfLiteRegistration **);
  TfLiteStatus (*ReplaceNodeSubsetsWithDelegateKernels)(struct TfLiteContext *, TfLiteRegistration,
                                                        const TfLiteIntArray *, struct TfLiteDelegate *);
  int recommended_num_threads;
  void *(*GetExternalContext)(struct TfLiteContext *, int);
  void (*SetExternalContext)(struct TfLiteContext *, int, void *);
  bool allow_fp32_relax_to_fp16;
  void *profiler;
  void *(*AllocatePersistentBuffer)(struct TfLiteContext *, size_t);
  TfLiteStatus (*AllocateBufferForEval)(struct TfLiteContext *, size_t, void **);
  TfLiteStatus (*RequestScratchBufferInArena)(struct TfLiteContext *, size_t, int *);
  void *(*GetScratchBuffer)(struct TfLiteContext *, int);
  TfLiteStatus (*ResizeTensorExplicit)(struct TfLiteContext *, TfLiteTensor *, int, const int *);
  void *PreviewDelegatePartitioning;
  TfLiteTensor *(*GetTensor)(const struct TfLiteContext *, int); /* NULL in the full runtime */
} TfLiteContext;

typedef struct TfLiteDelegate {
  void *data_;
  TfLiteStatus (*Prepare)(TfLiteContext *, struct TfLiteDelegate *);
  void *CopyFromBufferHandle;
  void *CopyToBufferHandle;
  void *FreeBufferHandle;
  int64_t flags;
  void *opaque_delegate_builder;
  char reserved[64];
} TfLiteDelegate;

enum { kTfLiteFloat32 = 1, kTfLiteInt32 = 2, kTfLiteUInt8 = 3, kTfLiteInt8 = 9, kTfLiteBuiltinDelegate = 51 };

/* True when every 8-bit / 32-bit tensor's byte count matches its shape: proves the stride above
 * matches the runtime before the delegate claims anything (else it claims nothing). */
static bool tensor_layout_matches(TfLiteContext *ctx) {
  for (size_t i = 0; i < ctx->tensors_size; ++i) {
    const TfLiteTensor *t = &ctx->tensors[i];
    size_t item = (t->type == kTfLiteInt8 || t->type == kTfLiteUInt8) ? 1
                : (t->type == kTfLiteFloat32 || t->type == kTfLiteInt32) ? 4 : 0;
    if (item == 0 || t->dims == NULL) continue;
    size_t n = item;
    for (int d = 0; d < t->dims->size; ++d) n *= (size_t)t->dims->data[d];
    if (n != t->bytes) return false;
  }
  return true;
}

typedef struct {
  int claim;
  char fail_file[512];
  char hang_file[512];
  char crash_file[512];
  int hang_ms;
} FakeNpuOptions;

static volatile long g_invocations = 0;
static long g_hanging = 0; /* atomic: worker threads of several interpreters may hang at once */

long fake_npu_invocations(void) { return g_invocations; }
long fake_npu_hanging(void) { return __atomic_load_n(&g_hanging, __ATOMIC_SEQ_CST); }

static bool exists(const char *path) { return path[0] != '\0' && access(path, F_OK) == 0; }

static TfLiteStatus kernel_prepare(TfLiteContext *ctx, TfLiteNode *node) {
  (void)ctx; (void)node;
  return kTfLiteOk;
}

static void *kernel_init(TfLiteContext *ctx, const char *buffer, size_t length) {
  (void)ctx; (void)length;
  /* buffer is TfLiteDelegateParams*; its first field is the delegate, whose data_ holds options */
  TfLiteDelegate *delegate = *(TfLiteDelegate *const *)buffer;
  return delegate->data_;
}

static void kernel_free(TfLiteContext *ctx, void *data) { (void)ctx; (void)data; }

static TfLiteStatus kernel_invoke(TfLiteContext *ctx, TfLiteNode *node) {
  FakeNpuOptions *opt = (FakeNpuOptions *)node->user_data;
  if (opt != NULL && exists(opt->fail_file)) {
    ctx->ReportError(ctx, "fake-npu: device lost (fail_file present)");
    return kTfLiteError;
  }
  if (opt != NULL && exists(opt->crash_file)) raise(SIGSEGV);
  if (opt != NULL && exists(opt->hang_file)) {
    /* Wedged until the test "replugs" (removes the file): the test then knows the invoke is
     * still inside the device when the engine gives up on it, with no timing assumption. */
    __atomic_add_fetch(&g_hanging, 1, __ATOMIC_SEQ_CST);
    for (int waited_ms = 0; waited_ms < opt->hang_ms && exists(opt->hang_file); ++waited_ms) usleep(1000);
    __atomic_sub_fetch(&g_hanging, 1, __ATOMIC_SEQ_CST);
  }
  /* The claimed nodes are RESHAPEs: copy the data input (not the int32 shape) to the output. */
  for (int o = 0; o < node->outputs->size; ++o) {
    TfLiteTensor *out = &ctx->tensors[node->outputs->data[o]];
    TfLiteTensor *src = NULL;
    for (int i = 0; i < node->inputs->size; ++i) {
      TfLiteTensor *in = &ctx->tensors[node->inputs->data[i]];
      if (in->bytes == out->bytes && (in->type != kTfLiteInt32 || out->type == kTfLiteInt32)) { src = in; break; }
    }
    if (src == NULL || src->data == NULL || out->data == NULL) {
      ctx->ReportError(ctx, "fake-npu: claimed node is not a byte-preserving reshape");
      return kTfLiteError;
    }
    memcpy(out->data, src->data, out->bytes);
  }
  g_invocations++;
  return kTfLiteOk;
}

static TfLiteStatus delegate_prepare(TfLiteContext *ctx, TfLiteDelegate *delegate) {
  FakeNpuOptions *opt = (FakeNpuOptions *)delegate->data_;
  TfLiteIntArray *plan = NULL;
  if (!tensor_layout_matches(ctx)) {
    ctx->ReportError(ctx, "fake-npu: TfLiteTensor layout differs from TF 2.14; claiming no nodes");
    return kTfLiteOk;
  }
  if (ctx->GetExecutionPlan(ctx, &plan) != kTfLiteOk) return kTfLiteError;
  TfLiteIntArray *claimed = calloc(1, sizeof(int) * (size_t)(plan->size + 1));
  if (claimed == NULL) return kTfLiteError;
  for (int i = 0; i < plan->size; ++i) {
    TfLiteNode *node = NULL;
    TfLiteRegistration *reg = NULL;
    if (ctx->GetNodeAndRegistration(ctx, plan->data[i], &node, &reg) != kTfLiteOk) continue;
    if (reg->builtin_code == opt->claim) claimed->data[claimed->size++] = plan->data[i];
  }
  TfLiteStatus status = kTfLiteOk;
  if (claimed->size > 0) {
    TfLiteRegistration kernel;
    memset(&kernel, 0, sizeof kernel);
    kernel.init = kernel_init;
    kernel.free = kernel_free;
    kernel.prepare = kernel_prepare;
    kernel.invoke = kernel_invoke;
    kernel.builtin_code = kTfLiteBuiltinDelegate;
    kernel.custom_name = "fake-npu";
    kernel.version = 1;
    status = ctx->ReplaceNodeSubsetsWithDelegateKernels(ctx, kernel, claimed, delegate);
  }
  free(claimed);
  return status;
}

TfLiteDelegate *tflite_plugin_create_delegate(char **keys, char **values, size_t n,
                                              void (*report_error)(const char *)) {
  FakeNpuOptions *opt = calloc(1, sizeof *opt);
  if (opt == NULL) return NULL;
  opt->claim = 22; /* RESHAPE */
  opt->hang_ms = 2000;
  for (size_t i = 0; i < n; ++i) {
    if (strcmp(keys[i], "claim") == 0) opt->claim = atoi(values[i]);
    else if (strcmp(keys[i], "fail_file") == 0) strncpy(opt->fail_file, values[i], sizeof opt->fail_file - 1);
    else if (strcmp(keys[i], "hang_file") == 0) strncpy(opt->hang_file, values[i], sizeof opt->hang_file - 1);
    else if (strcmp(keys[i], "hang_ms") == 0) opt->hang_ms = atoi(values[i]);
    else if (strcmp(keys[i], "crash_file") == 0) strncpy(opt->crash_file, values[i], sizeof opt->crash_file - 1);
    else if (strcmp(keys[i], "fail_create") == 0 && atoi(values[i]) != 0) {
      if (report_error) report_error("fake-npu: no device found (fail_create=1)");
      free(opt);
      return NULL;
    } else {
      if (report_error) report_error("fake-npu: unknown option");
      free(opt);
      return NULL;
    }
  }
  TfLiteDelegate *d = calloc(1, sizeof *d);
  if (d == NULL) { free(opt); return NULL; }
  d->data_ = opt;
  d->Prepare = delegate_prepare;
  d->flags = 0;
  return d;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate *d) {
  if (d == NULL) return;
  free(d->data_);
  free(d);
}
