# ddpm -- the library, the CLI, install, tests, demo and benchmarks. See README.md.
#
#   make            build/libddpm.so (soname libddpm.so.MAJOR), build/libddpm.a (both export
#                   only the public ddpm_* functions of include/ddpm.h), build/ddpm (the CLI)
#                   and build/ddpm.1 (its man page, from the --help texts), for any x86-64 CPU
#                   (ARCH=-march=native: for this CPU only)
#   make install PREFIX=/usr/local DESTDIR=  the header, both libraries, ddpm, ddpm.pc (pkg-config)
#                   and ddpm.1; `make uninstall` (same PREFIX and DESTDIR) removes exactly those
#   make examples   build/examples/{sample,train} (examples/*.c on the shared library)
#   make test       install missing Debian packages, build from scratch, run every test (a skip fails)
#   make test SAN=1 the same under AddressSanitizer + UndefinedBehaviorSanitizer (build-san/)
#   make demo       train on Fashion-MNIST with the default preset, then sample a grid
#   make demo-classes  the same, class-conditional: a grid with one row per class (guidance 3)
#   make bench      forward / forward+backward throughput of the presets
#   make bench-torch  ddpm and PyTorch side by side on the same models (ratios, peak RSS)
#   make bench-bf16   ddpm's bf16 mixed precision (a CPU with AVX512_BF16 or AMX-BF16): its test, then bench-torch's bf16 rows
#   make bench-scaling  img/s against batch, threads and image size (docs/perf.md)
#   make bench-mpi  one process with every thread against one process per CPU (MPI), same batch (docs/scaling.md)
#   make fixtures   regenerate tests/fixtures with the PyTorch reference (needs python3-torch)
#   make fuzz FUZZ_S=60  build the libFuzzer harnesses (fuzz/, clang-14, build-fuzz/) and run each
#                   FUZZ_S seconds (scripts/fuzz.sh: logs and crash inputs in runs/fuzz/)

CC      := gcc
SAN     ?= 0
ifeq ($(SAN),1)
BUILD   ?= build-san
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN   := -fsanitize=address,undefined
else
BUILD   ?= build
OPT     := -O3 -g
LDSAN   :=
endif
# The x86-64 baseline: the build runs on any x86-64 CPU. ddpm's hot loops (KERNEL_SRC below)
# are compiled again for AVX2 and AVX-512 and chosen when the program starts (src/core/cpu.h).
# ARCH=-march=native makes a build for the building CPU (and those like it) only.
ARCH    ?= -march=x86-64 -mtune=generic
WERROR  ?= -Werror
# -fno-trapping-math: no FP exception traps are used, and it lets GCC
# vectorise clamps written as a < b ? b : a (src/ops/vmath.h).
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE $(OPT) $(ARCH) -fno-trapping-math -fopenmp -Wall -Wextra -Wpointer-arith \
               $(WERROR) -Wno-unused-parameter -MMD -MP
# The library: position-independent, and every symbol hidden unless marked DDPM_API
# (include/ddpm.h), so libddpm.so exports the public API alone.
# $(BUILD)/gen: the C that protoc-c generates from src/*/*.proto (the TensorBoard events).
CFLAGS  := $(BASE_CFLAGS) -fPIC -fvisibility=hidden -Iinclude -Isrc -I$(BUILD)/gen
# OpenBLAS (OpenMP build): double-precision BLAS/LAPACK for the FID statistics.
DEPLIBS := -ldnnl -lopenblas -lcjson -lpng -lz -lxxhash -lprotobuf-c -lm -fopenmp
# MPI (src/dist): on when Open MPI's mpicc is installed, or with MPI=1; MPI=0 builds
# a single-process ddpm. One binary serves plain runs and mpirun/srun.
MPI     ?= $(if $(shell command -v mpicc 2>/dev/null),1,0)
ifeq ($(MPI),1)
CFLAGS  += -DDDPM_MPI $(patsubst -I%,-isystem %,$(shell mpicc --showme:compile))
DEPLIBS += $(shell mpicc --showme:link)
endif
LDLIBS  := $(DEPLIBS) $(LDSAN)

# The version, from include/ddpm.h.
ver      = $(shell sed -n 's/^\#define DDPM_VERSION_$(1) \([0-9][0-9]*\).*/\1/p' include/ddpm.h)
MAJOR   := $(call ver,MAJOR)
VERSION := $(MAJOR).$(call ver,MINOR).$(call ver,PATCH)

SRC       := $(wildcard src/*/*.c)
PROTO     := $(wildcard src/*/*.proto)
# The kernels: compiled once per instruction-set level (src/core/cpu.h), FILE.LEVEL.o, each
# global NAME renamed NAME__LEVEL; per folder, a generated kernels.c jumps from NAME to the
# running level's copy.
KERNEL_SRC  := src/core/rng.c src/ops/elementwise.c src/ops/groupnorm.c src/ops/optim.c src/ops/winograd.c
CPU_LEVELS  := x86_64 avx2 avx512
march_x86_64 :=
march_avx2   := -march=x86-64-v3
march_avx512 := -march=x86-64-v4
KERNEL_DIRS := $(sort $(patsubst src/%/,%,$(dir $(KERNEL_SRC))))
KERNEL_OBJ  := $(foreach l,$(CPU_LEVELS),$(KERNEL_SRC:%.c=$(BUILD)/%.$(l).o))
# The generated C's objects sit with their folder's (tests/test_symbols.sh checks names by folder).
OBJ       := $(filter-out $(KERNEL_SRC),$(SRC))
OBJ       := $(OBJ:%.c=$(BUILD)/%.o) $(PROTO:%.proto=$(BUILD)/%.pb-c.o) $(KERNEL_OBJ) \
             $(KERNEL_DIRS:%=$(BUILD)/src/%/kernels.o)
SO_NAME   := libddpm.so.$(MAJOR)
SO        := $(BUILD)/libddpm.so.$(VERSION)
SO_LINKS  := $(BUILD)/$(SO_NAME) $(BUILD)/libddpm.so
STATIC    := $(BUILD)/libddpm.a
# Every object as it is, hidden symbols included: the tests and benchmarks use internal functions.
INTERNAL  := $(BUILD)/libddpm-internal.a
CLI_SRC   := $(wildcard cli/*.c)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC  := $(wildcard tests/test_*.c)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
EXAMPLE_BIN := $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))

# The CLI sees include/ddpm.h and cli/ only (no -Isrc) and links against libddpm.so, which
# exports the public API alone: the proof that the API is enough to write ddpm on.
CLI_CFLAGS := $(BASE_CFLAGS) -Iinclude -Icli
CLI_DEPS   := $(SO) $(SO_LINKS)
CLI_LINK   := -L$(BUILD) -lddpm -Wl,-rpath,'$$ORIGIN' -Wl,-rpath,'$$ORIGIN/../lib' -lcjson -lm $(LDSAN)

PREFIX  ?= /usr/local
DESTDIR ?=
PKGDIR  := $(DESTDIR)$(PREFIX)/lib/pkgconfig
MANDIR  := $(DESTDIR)$(PREFIX)/share/man/man1

.PHONY: all libs examples test test-build deps install uninstall FORCE demo demo-classes bench bench-torch bench-bf16 \
        bench-scaling bench-mpi fixtures clean
all: libs $(BUILD)/ddpm $(BUILD)/ddpm.1 $(BUILD)/ddpm.pc
libs: $(SO) $(SO_LINKS) $(STATIC)

deps:
	@scripts/install-deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# protoc-c: src/DIR/NAME.proto -> $(BUILD)/gen/DIR/NAME.pb-c.{c,h}, included as "DIR/NAME.pb-c.h".
$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: src/%.proto
	@mkdir -p $(dir $@)
	protoc-c --proto_path=$(dir $<) --c_out=$(dir $@) $<
$(BUILD)/src/%.pb-c.o: $(BUILD)/gen/%.pb-c.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@
# A kernel's copy for one level (src/core/cpu.h): compiled with that level's -march (none for
# the baseline: ARCH's), then each global NAME the object defines renamed NAME__LEVEL.
define KERNEL_COPY
$$(BUILD)/%.$(1).o: %.c
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) $$(march_$(1)) -MF $$(@:.o=.d) -MT $$@ -c $$< -o $$@.tmp
	nm -g --defined-only $$@.tmp | awk 'NF == 3 { print $$$$3, $$$$3 "__$(1)" }' > $$@.names
	objcopy --redefine-syms=$$@.names $$@.tmp $$@
	@rm -f $$@.tmp $$@.names
endef
$(foreach l,$(CPU_LEVELS),$(eval $(call KERNEL_COPY,$(l))))
# A folder's dispatch: CPU_KERNELS over the functions its kernels' baseline copies define (a
# global that is not a function fails the build: it would exist once per level).
$(BUILD)/gen/%/kernels.c: scripts/kernel-dispatch.sh
	@mkdir -p $(dir $@)
	scripts/kernel-dispatch.sh $(filter $(BUILD)/src/$*/%,$^) > $@.tmp && mv $@.tmp $@
$(foreach d,$(KERNEL_DIRS),$(eval $(BUILD)/gen/$(d)/kernels.c: $(patsubst %.c,$(BUILD)/%.x86_64.o,$(filter src/$(d)/%,$(KERNEL_SRC)))))
$(BUILD)/src/%/kernels.o: $(BUILD)/gen/%/kernels.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@
# Before their first build (-MMD has no .d yet), the sources that include a generated header.
$(BUILD)/src/io/tfevents.o: $(BUILD)/gen/io/tfevents.pb-c.h

# The compiler flags in use: objects built with other flags (e.g. before -fPIC) are rebuilt.
flags_stamp = @mkdir -p $(dir $@); echo '$(CC) $(1)' | cmp -s - $@ || echo '$(CC) $(1)' > $@
$(BUILD)/cflags.txt: FORCE
	$(call flags_stamp,$(CFLAGS))
$(BUILD)/cli/cflags.txt: FORCE
	$(call flags_stamp,$(CLI_CFLAGS))
$(OBJ): $(BUILD)/cflags.txt
$(CLI_OBJ): $(BUILD)/cli/cflags.txt
FORCE:

$(BUILD)/cli/%.o: cli/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CLI_CFLAGS) -c $< -o $@

# The built-in F-MNIST feature network's weights are assembled into its object (.incbin).
$(BUILD)/src/eval/fmnist_net.o: src/eval/fmnist_features.safetensors

# The shared library; -z defs: a symbol no listed library defines fails the link.
$(SO): $(OBJ)
	$(CC) -shared -Wl,-soname,$(SO_NAME) -Wl,-z,defs $(OPT) $^ -o $@ $(LDLIBS)
$(BUILD)/$(SO_NAME): $(SO)
	ln -sf $(notdir $<) $@
$(BUILD)/libddpm.so: $(BUILD)/$(SO_NAME)
	ln -sf $(notdir $<) $@

# The static library: the objects linked into one (ld -r), whose hidden symbols are then made
# local, so it too exposes only ddpm_* (a program may define its own gemm or make_dirs).
$(STATIC): $(OBJ)
	@rm -f $@ $@.o
	ld -r $^ -o $@.o
	objcopy --localize-hidden $@.o
	ar rcs $@ $@.o
	@rm -f $@.o

$(INTERNAL): $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/ddpm: $(CLI_OBJ) $(CLI_DEPS)
	$(CC) $(OPT) $(CLI_OBJ) -o $@ $(CLI_LINK)

# The man page, from `ddpm --help` and every command's --help.
$(BUILD)/ddpm.1: $(BUILD)/ddpm scripts/man.sh
	scripts/man.sh $(BUILD)/ddpm $(VERSION) > $@.tmp && mv $@.tmp $@

# pkg-config's file for the prefix PREFIX (install writes it again for the prefix it installs to).
pcfile = sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@LIBS_PRIVATE@|$(DEPLIBS)|' ddpm.pc.in
$(BUILD)/ddpm.pc: ddpm.pc.in include/ddpm.h
	@mkdir -p $(dir $@)
	$(pcfile) > $@

$(BUILD)/tests/%: tests/%.c $(INTERNAL)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< $(INTERNAL) -o $@ $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(INTERNAL)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(INTERNAL) -o $@ $(LDLIBS)

# The examples as a program outside would build them: ddpm.h and libddpm.so only.
$(BUILD)/examples/%: examples/%.c $(SO) $(SO_LINKS)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -Iinclude $< -o $@ -L$(BUILD) -lddpm -Wl,-rpath,'$$ORIGIN/..' $(LDSAN)
examples: $(EXAMPLE_BIN)

test-build: $(TEST_BIN) all

# From scratch: dependencies, a clean build directory, every test. The dependencies are
# installed, so a test that skips (exit 77: mpirun missing, say) fails here (DDPM_NO_SKIP=1).
test:
	@scripts/install-deps.sh --test
	rm -rf $(BUILD)
	$(MAKE) --no-print-directory test-build SAN=$(SAN)
	DDPM_NO_SKIP=1 scripts/run-tests.sh $(BUILD)

# Installs what `make` built (building only what is missing).
install: all
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/bin $(PKGDIR) $(MANDIR)
	install -m 644 include/ddpm.h $(DESTDIR)$(PREFIX)/include/ddpm.h
	install -m 755 $(SO) $(DESTDIR)$(PREFIX)/lib/libddpm.so.$(VERSION)
	ln -sf libddpm.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/$(SO_NAME)
	ln -sf $(SO_NAME) $(DESTDIR)$(PREFIX)/lib/libddpm.so
	install -m 644 $(STATIC) $(DESTDIR)$(PREFIX)/lib/libddpm.a
	install -m 755 $(BUILD)/ddpm $(DESTDIR)$(PREFIX)/bin/ddpm
	$(pcfile) > $(PKGDIR)/ddpm.pc
	install -m 644 $(BUILD)/ddpm.1 $(MANDIR)/ddpm.1
	@# The loader's cache, for programs linked against a system prefix (root, no DESTDIR).
	@[ -n "$(DESTDIR)" ] || [ "$$(id -u)" != 0 ] || ! command -v ldconfig > /dev/null || ldconfig

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/ddpm.h $(DESTDIR)$(PREFIX)/lib/libddpm.so.$(VERSION) \
	      $(DESTDIR)$(PREFIX)/lib/$(SO_NAME) $(DESTDIR)$(PREFIX)/lib/libddpm.so \
	      $(DESTDIR)$(PREFIX)/lib/libddpm.a $(DESTDIR)$(PREFIX)/bin/ddpm $(PKGDIR)/ddpm.pc $(MANDIR)/ddpm.1

demo: deps
	$(MAKE) --no-print-directory $(BUILD)/ddpm
	scripts/demo.sh $(BUILD)/ddpm

demo-classes: deps
	$(MAKE) --no-print-directory $(BUILD)/ddpm
	DEMO_CLASSES=1 scripts/demo.sh $(BUILD)/ddpm

bench: deps $(BENCH_BIN)
	$(BUILD)/bench/bench_unet

# ddpm against the PyTorch reference (python3-torch), same models: train and sample img/s, GFLOP/s, peak RSS.
bench-torch: deps $(BENCH_BIN)
	@scripts/install-deps.sh --bench
	bench/bench_torch.sh $(BUILD)

# ddpm's --precision bf16 on a CPU with AVX512_BF16 or AMX-BF16: its test, then bench-torch with the bf16 rows.
bench-bf16: deps $(BENCH_BIN) $(BUILD)/tests/test_bf16
	@scripts/install-deps.sh --bench
	bench/bench_bf16.sh $(BUILD)

bench-scaling: deps $(BENCH_BIN)
	bench/scaling.sh $(BUILD)

bench-mpi: deps $(BENCH_BIN) $(BUILD)/ddpm
	bench/mpi.sh $(BUILD)

fixtures:
	/usr/bin/python3 tools/make_fixtures.py tests/fixtures

clean:
	rm -rf build build-san build-fuzz

# ---- fuzzing: one libFuzzer harness per parser of untrusted input (fuzz/fuzz_NAME.c),
# built with clang-14 under ASan+UBSan together with just the sources it needs (all
# compiled with the same flags; none of them uses OpenMP), into build-fuzz/.
FUZZ_CC     ?= clang-14
FUZZ_BUILD  := build-fuzz
FUZZ_S      ?= 60
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
               -fno-sanitize-recover=undefined -Wall -Wextra -Wno-unused-parameter -Iinclude -Isrc -Icli -MMD -MP
FUZZ_LIBS   := -lcjson -lpng -lz -lxxhash -lm
FUZZ_NAMES  := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_DATA   := src/data/dataset.c src/data/idx.c src/data/cifar.c src/data/imagefolder.c src/data/labels.c src/io/png.c
fuzz_safetensors_SRC := src/io/safetensors.c src/io/fileio.c
fuzz_config_SRC      := src/model/config.c
fuzz_schedule_SRC    := src/diffusion/schedule.c
fuzz_npy_SRC         := src/io/npy.c src/io/fileio.c
fuzz_npz_SRC         := src/io/npz.c src/io/npy.c src/io/fileio.c
fuzz_idx_SRC         := $(FUZZ_DATA)
fuzz_cifar_SRC       := $(FUZZ_DATA)
fuzz_pngdir_SRC      := $(FUZZ_DATA)
fuzz_args_SRC        := cli/args.c
FUZZ_BIN    := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_OBJ    := $(sort $(foreach f,$(FUZZ_NAMES),$(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,fuzz/fuzz_$(f).c $(fuzz_$(f)_SRC) src/core/status.c)))

.PHONY: fuzz fuzz-build
$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

define FUZZ_LINK
$(FUZZ_BUILD)/fuzz_$(1): $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,fuzz/fuzz_$(1).c $(fuzz_$(1)_SRC) src/core/status.c)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $$^ -o $$@ $(FUZZ_LIBS)
endef
$(foreach f,$(FUZZ_NAMES),$(eval $(call FUZZ_LINK,$(f))))

fuzz-build: $(FUZZ_BIN)

# Every harness for FUZZ_S seconds, one after another; fails on any crash.
fuzz: fuzz-build
	scripts/fuzz.sh -b $(FUZZ_BUILD) -t $(FUZZ_S)

-include $(OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(FUZZ_OBJ:.o=.d)
