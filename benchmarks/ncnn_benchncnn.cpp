// A `benchncnn` for ncnn's PyPI source distribution, which ships src/ but not ncnn's benchmark/ directory.
// benchmarks/bench_ncnn_arm.py copies this file into the cached ncnn tree as benchmark/benchncnn.cpp so that
// -DNCNN_BUILD_BENCHMARK=ON builds it. It takes benchncnn's command line and sets benchncnn's options:
//
//   benchncnn [loop_count] [num_threads] [powersave] [gpu_device] [cooling_down] param=FILE shape=[w,h,c]
//
// The network is loaded with all-zero weights, the input is filled with 0.01, and every inference (8 warm-up
// runs, then loop_count timed runs) is one extractor from input "data" to output "output" (the blob names of
// ncnn's benchmark networks). gpu_device must be -1 and cooling_down is accepted and ignored (no sleep under
// an instruction counter).

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <string>
#include <vector>

#include "benchmark.h"
#include "cpu.h"
#include "datareader.h"
#include "net.h"

namespace {

const int kWarmupLoops = 8;

class ZeroReader : public ncnn::DataReader {
 public:
  int scan(const char*, void*) const override { return 0; }
  size_t read(void* buf, size_t size) const override {
    memset(buf, 0, size);
    return size;
  }
};

bool parse_shape(const char* text, std::vector<int>* dims) {
  std::string s(text);
  if (s.size() < 2 || s.front() != '[' || s.back() != ']') return false;
  s = s.substr(1, s.size() - 2);
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    std::string item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    char* end = nullptr;
    long v = strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v <= 0) return false;
    dims->push_back(static_cast<int>(v));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return dims->size() >= 1 && dims->size() <= 4;
}

ncnn::Mat make_input(const std::vector<int>& d) {
  switch (d.size()) {
    case 1: return ncnn::Mat(d[0]);
    case 2: return ncnn::Mat(d[0], d[1]);
    case 3: return ncnn::Mat(d[0], d[1], d[2]);
    default: return ncnn::Mat(d[0], d[1], d[2], d[3]);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int numbers[5] = {4, ncnn::get_big_cpu_count(), 0, -1, 1};
  const char* param = nullptr;
  std::vector<int> shape;
  int positional = 0;
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "param=", 6) == 0) {
      param = argv[i] + 6;
    } else if (strncmp(argv[i], "shape=", 6) == 0) {
      if (!parse_shape(argv[i] + 6, &shape)) {
        fprintf(stderr, "benchncnn: bad shape %s (want [w,h,c])\n", argv[i] + 6);
        return 2;
      }
    } else if (positional < 5) {
      numbers[positional++] = atoi(argv[i]);
    } else {
      fprintf(stderr, "benchncnn: unexpected argument %s\n", argv[i]);
      return 2;
    }
  }
  const int loop_count = numbers[0], num_threads = numbers[1], powersave = numbers[2], gpu_device = numbers[3];
  if (param == nullptr || shape.empty() || loop_count < 1 || gpu_device != -1) {
    fprintf(stderr, "usage: benchncnn loops threads powersave -1 cooling_down param=FILE shape=[w,h,c]\n");
    return 2;
  }

  static ncnn::UnlockedPoolAllocator blob_pool;
  static ncnn::PoolAllocator workspace_pool;
  blob_pool.set_size_compare_ratio(0.f);
  workspace_pool.set_size_compare_ratio(0.5f);

  ncnn::Option opt;
  opt.lightmode = true;
  opt.num_threads = num_threads;
  opt.blob_allocator = &blob_pool;
  opt.workspace_allocator = &workspace_pool;
  opt.use_winograd_convolution = true;
  opt.use_sgemm_convolution = true;
  opt.use_int8_inference = true;
  opt.use_fp16_packed = true;
  opt.use_fp16_storage = true;
  opt.use_fp16_arithmetic = true;
  opt.use_int8_storage = true;
  opt.use_int8_arithmetic = true;
  opt.use_packing_layout = true;
  ncnn::set_cpu_powersave(powersave);
  ncnn::set_omp_dynamic(0);
  ncnn::set_omp_num_threads(num_threads);

  ncnn::Net net;
  net.opt = opt;
  ZeroReader zeros;
  if (net.load_param(param) != 0 || net.load_model(zeros) != 0) {
    fprintf(stderr, "benchncnn: cannot load %s\n", param);
    return 1;
  }
  ncnn::Mat in = make_input(shape);
  in.fill(0.01f);
  ncnn::Mat out;
  double t_min = DBL_MAX, t_max = 0, t_sum = 0;
  for (int i = 0; i < kWarmupLoops + loop_count; i++) {
    double start = ncnn::get_current_time();
    ncnn::Extractor ex = net.create_extractor();
    ex.input("data", in);
    if (ex.extract("output", out) != 0) {
      fprintf(stderr, "benchncnn: extract failed\n");
      return 1;
    }
    double ms = ncnn::get_current_time() - start;
    if (i >= kWarmupLoops) {
      t_min = std::min(t_min, ms);
      t_max = std::max(t_max, ms);
      t_sum += ms;
    }
  }
  fprintf(stderr, "loop_count = %d\nnum_threads = %d\npowersave = %d\n", loop_count, num_threads, powersave);
  fprintf(stderr, "%20s  min = %7.2f  max = %7.2f  avg = %7.2f\n", param, t_min, t_max, t_sum / loop_count);
  return 0;
}
