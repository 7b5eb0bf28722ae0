# ddpm -- build, test, demo and benchmarks. See README.md.
#
#   make            build build/ddpm (the CLI) and build/libddpm.a
#   make test       install missing Debian packages, build from scratch, run every test
#   make test SAN=1 the same under AddressSanitizer + UndefinedBehaviorSanitizer (build-san/)
#   make demo       train on Fashion-MNIST with the default preset, then sample a grid
#   make demo-classes  the same, class-conditional: a grid with one row per class (guidance 3)
#   make bench      forward / forward+backward throughput of the presets
#   make bench-torch  ddpm and PyTorch side by side on the same models (ratios, peak RSS)
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
ARCH    ?= -march=native
WERROR  ?= -Werror
# -fno-trapping-math: no FP exception traps are used, and it lets GCC
# vectorise clamps written as a < b ? b : a (src/ops/vmath.h).
CFLAGS  := -std=c11 -D_GNU_SOURCE $(OPT) $(ARCH) -fno-trapping-math -fopenmp -Wall -Wextra -Wpointer-arith $(WERROR) \
           -Wno-unused-parameter -Iinclude -Isrc -MMD -MP
# OpenBLAS (OpenMP build): double-precision BLAS/LAPACK for the FID statistics.
LDLIBS  := -ldnnl -lopenblas -lcjson -lpng -lz -lxxhash -lm -fopenmp $(LDSAN)
# MPI (src/dist): on when Open MPI's mpicc is installed, or with MPI=1; MPI=0 builds
# a single-process ddpm. One binary serves plain runs and mpirun/srun.
MPI     ?= $(if $(shell command -v mpicc 2>/dev/null),1,0)
ifeq ($(MPI),1)
CFLAGS  += -DDDPM_MPI $(patsubst -I%,-isystem %,$(shell mpicc --showme:compile))
LDLIBS  += $(shell mpicc --showme:link)
endif

SRC       := $(wildcard src/*/*.c)
OBJ       := $(SRC:%.c=$(BUILD)/%.o)
LIB       := $(BUILD)/libddpm.a
CLI_SRC   := $(wildcard cli/*.c)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC  := $(wildcard tests/test_*.c)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all test test-build deps demo demo-classes bench bench-torch bench-scaling bench-mpi fixtures clean
all: $(BUILD)/ddpm

deps:
	@scripts/install-deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# The built-in F-MNIST feature network's weights are assembled into its object (.incbin).
$(BUILD)/src/eval/fmnist_net.o: src/eval/fmnist_features.safetensors

$(LIB): $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/ddpm: $(CLI_OBJ) $(LIB)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< $(LIB) -o $@ $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(LIB) -o $@ $(LDLIBS)

test-build: $(TEST_BIN) $(BUILD)/ddpm

# From scratch: dependencies, a clean build directory, every test.
test:
	@scripts/install-deps.sh --test
	rm -rf $(BUILD)
	$(MAKE) --no-print-directory test-build SAN=$(SAN)
	scripts/run-tests.sh $(BUILD)

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
	bench/bench_torch.sh $(BUILD)

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
