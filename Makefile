# kvant — build. `make` builds build/kvant; `make test` runs the whole suite
# (unit + conformance tests, then the same tests under ASan+UBSan).
#
# Sources are found by wildcard, so adding src/<stage>/<file>.c or
# tests/test_<name>.c needs no edit here. Files ending in _avx2.c / _avx512.c are
# the only ones compiled with ISA flags; the choice between them is made at run time.

CC      ?= cc
PKGS    := libpcre2-8 libutf8proc libcjson
PKGCFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKGLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lpcre2-8 -lutf8proc -lcjson)
WERROR  ?=
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -Wall -Wextra $(WERROR) -fopenmp -D_GNU_SOURCE -Iinclude -Isrc $(PKGCFLAGS) -MMD -MP
LDFLAGS ?=
LDLIBS  += $(PKGLIBS) -fopenmp -lm -lpthread
SAN     ?=
BUILD   ?= build

ISA_AVX2   := -mavx2 -mfma -mf16c
ISA_AVX512 := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mfma -mf16c

LIB_SRC   := $(shell find src -name '*.c' ! -path 'src/cli/*' | sort)
CLI_SRC   := $(sort $(wildcard src/cli/*.c))
TEST_SRC  := $(sort $(wildcard tests/test_*.c))
BENCH_SRC := $(sort $(wildcard bench/bench_*.c))

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
LIB       := $(BUILD)/libkvant.a

.PHONY: all test check asan asan-build bench format clean demo

# Data sets are read in place: $(KVANT_DATA), else ../shared/data.
DATA ?= $(if $(KVANT_DATA),$(KVANT_DATA),../shared/data)
DEMO_MODEL ?= models/tiny-qwen3
all: $(BUILD)/kvant $(TEST_BIN) $(BENCH_BIN)

$(BUILD)/obj/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) $(ISA_AVX2) -c $< -o $@

$(BUILD)/obj/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) $(ISA_AVX512) -c $< -o $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/kvant: $(CLI_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(SAN) $(LDFLAGS) $(CLI_OBJ) $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/%.c tests/test.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

# The whole suite: normal build, then ASan+UBSan build of the same tests.
test: all asan-build
	@tests/run.sh $(BUILD) build-asan

check: test

asan-build:
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  build-asan/kvant $(TEST_SRC:tests/%.c=build-asan/tests/%)

asan: asan-build
	@tests/run.sh build-asan

bench: all
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b || exit 1; done

format:
	clang-format -i $(LIB_SRC) $(CLI_SRC) $(TEST_SRC) $(BENCH_SRC) include/kvant/*.h

# The README's first command: build, then the main job on the embedded default: the
# study (every format x the six study tasks) on the default testbed, printing its table.
demo: $(BUILD)/kvant
	@if [ -d $(DATA)/wikitext2 ]; then \
	  $(BUILD)/kvant study --data $(DATA); \
	else \
	  echo "== $(DATA) not found (set KVANT_DATA): perplexity of $(DEMO_MODEL) on docs/sample.txt"; \
	  $(BUILD)/kvant ppl $(DEMO_MODEL) --text docs/sample.txt --ctx 512; \
	fi

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) build-asan -name '*.d' 2>/dev/null)
