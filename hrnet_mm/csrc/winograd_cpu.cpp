// Winograd F(4x4, 3x3) convolution for fp32 inference on x86 CPUs with AVX2 and FMA.
//
// One pass per block of 16 output tiles, everything in cache: the input transform of the
// block's 6x6 tiles (B^T d B), 36 small matrix products with the transformed kernel
// (G w G^T, computed and packed in Python), and the output transform (A^T m A) with the bias,
// an optional residual and an optional ReLU. The unfused version (transforms compiled by
// inductor around torch.bmm) went through memory three times per convolution and lost to the
// direct convolution below 96 channels; this one wins from 18 channels up
// (docs/benchmarks.md). hrnet_mm/winograd.py builds it with torch.utils.cpp_extension and
// holds the reference implementation in PyTorch that the tests compare it with.
//
// Its entry is a C function, loaded with ctypes: hrnet_mm/winograd.py (kernel_conv3x3) checks
// every tensor (dtype, device, layout, shape), makes the output and passes raw pointers. Of
// torch it uses the thread pool alone: with torch's tensor API (torch/extension.h) and pybind11
// the build took 50 s on 2 cores, now 4, and the loop below compiles to the same instructions
// as it did then. (Under a plain `omp parallel` instead of at::parallel_for it measured 3-6%
// slower on single convolutions.)
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace {

constexpr int VL = 8;            // floats per AVX2 register
constexpr int NB = 3 * VL;       // output channels per block of the packed kernel
constexpr int ROWS = 4;          // tiles per micro-kernel call
constexpr int TILES = 16;        // tiles per block (a multiple of ROWS)
typedef float vf __attribute__((vector_size(VL * 4)));

inline vf load(const float* p) { return (vf)_mm256_loadu_ps(p); }
inline void store(float* p, vf v) { _mm256_storeu_ps(p, (__m256)v); }
inline vf broadcast(float s) { return (vf)_mm256_set1_ps(s); }
inline __m256i mask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
// the first n < VL channels; the other lanes read as zero and are not written
inline vf load_part(const float* p, int n) { return (vf)_mm256_maskload_ps(p, mask(n)); }
inline void store_part(float* p, vf v, int n) { _mm256_maskstore_ps(p, mask(n), (__m256)v); }
inline vf load_n(const float* p, int n) { return n == VL ? load(p) : load_part(p, n); }

// B^T along one tile axis: six inputs (stride s) to six outputs (stride os)
inline void input_rows(const vf* d, int s, vf* o, int os) {
  const vf d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s], d5 = d[5 * s];
  o[0] = 4.f * d0 - 5.f * d2 + d4;
  o[os] = -4.f * (d1 + d2) + d3 + d4;
  o[2 * os] = 4.f * (d1 - d2) - d3 + d4;
  o[3 * os] = 2.f * (d3 - d1) - d2 + d4;
  o[4 * os] = 2.f * (d1 - d3) - d2 + d4;
  o[5 * os] = 4.f * d1 - 5.f * d3 + d5;
}

// A^T along one tile axis: six products (stride s) to four outputs (stride os)
inline void output_rows(const vf* m, int s, vf* o, int os) {
  const vf m0 = m[0], m1 = m[s], m2 = m[2 * s], m3 = m[3 * s], m4 = m[4 * s], m5 = m[5 * s];
  const vf s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
  o[0] = m0 + s12 + s34;
  o[os] = d12 + 2.f * d34;
  o[2 * os] = s12 + 4.f * s34;
  o[3 * os] = d12 + 8.f * d34 + m5;
}

// M[ROWS][NV * VL] = V[ROWS][cin] @ U[cin][NV * VL]: 4 x NV accumulators in registers
template <int NV>
inline void product(const float* V, int ldv, const float* U, float* M, int ldm, int cin) {
  vf acc[ROWS][NV];
  for (int i = 0; i < ROWS; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = vf{};
  for (int ci = 0; ci < cin; ++ci) {
    vf u[NV];
    for (int j = 0; j < NV; ++j) {
      u[j] = load(U + ci * NV * VL + j * VL);
      // keep u in a register: gcc otherwise folds the load into every FMA, which doubles
      // the loads per FMA and made the products 30% slower
      asm("" : "+x"(u[j]));
    }
    for (int i = 0; i < ROWS; ++i) {
      const vf s = broadcast(V[i * ldv + ci]);
      for (int j = 0; j < NV; ++j) acc[i][j] += s * u[j];
    }
  }
  for (int i = 0; i < ROWS; ++i)
    for (int j = 0; j < NV; ++j) store(M + i * ldm + j * VL, acc[i][j]);
}

struct Shape {
  int n, cin, h, w, cout, cop, cp, th, tw;
  int64_t tiles;
};

// B^T d B of tiles g0 .. g0 + TILES - 1 (zero past the last tile) into V (36, TILES, cp)
void transform_input(const float* X, const Shape& s, int64_t g0, float* V) {
  for (int t = 0; t < TILES; ++t) {
    const int64_t g = g0 + t;
    const bool real = g < s.tiles;
    const int img = real ? g / ((int64_t)s.th * s.tw) : 0;
    const int ty = real ? g / s.tw % s.th : 0, tx = real ? g % s.tw : 0;
    const int y0 = ty * 4 - 1, x0 = tx * 4 - 1;
    const bool inside = real && y0 >= 0 && x0 >= 0 && y0 + 6 <= s.h && x0 + 6 <= s.w;
    const float* Xi = X + (int64_t)img * s.h * s.w * s.cin;
    for (int cv = 0; cv < s.cp; cv += VL) {
      const int nc = std::min(VL, s.cin - cv);
      vf d[36], e[36];
      for (int r = 0; r < 6; ++r) {
        const int iy = y0 + r;
        for (int c = 0; c < 6; ++c) {
          const int ix = x0 + c;
          const bool in = inside || (real && iy >= 0 && iy < s.h && ix >= 0 && ix < s.w);
          d[r * 6 + c] = in ? load_n(Xi + ((int64_t)iy * s.w + ix) * s.cin + cv, nc) : vf{};
        }
      }
      for (int c = 0; c < 6; ++c) input_rows(d + c, 6, e + c, 6);  // along the height
      for (int a = 0; a < 6; ++a) {
        vf o[6];
        input_rows(e + a * 6, 1, o, 1);  // along the width
        for (int b = 0; b < 6; ++b) store(V + ((a * 6 + b) * TILES + t) * s.cp + cv, o[b]);
      }
    }
  }
}

// M (36, TILES, cop) = V (36, TILES, cp) @ U (36, cin, cop), U packed in blocks of NB columns
void multiply(const float* V, const float* U, const Shape& s, float* M) {
  for (int k = 0; k < 36; ++k) {
    const float* Vk = V + k * TILES * s.cp;
    const float* Uk = U + (int64_t)k * s.cin * s.cop;
    float* Mk = M + k * TILES * s.cop;
    for (int t = 0; t < TILES; t += ROWS) {
      const float* Vt = Vk + t * s.cp;
      float* Mt = Mk + t * s.cop;
      int co = 0;
      for (; co + NB <= s.cop; co += NB)
        product<3>(Vt, s.cp, Uk + co * s.cin, Mt + co, s.cop, s.cin);
      if (s.cop - co == 2 * VL) product<2>(Vt, s.cp, Uk + co * s.cin, Mt + co, s.cop, s.cin);
      else if (s.cop - co == VL) product<1>(Vt, s.cp, Uk + co * s.cin, Mt + co, s.cop, s.cin);
    }
  }
}

// A^T m A of the block's real tiles, + bias (+ residual) (ReLU), into Y (N, H, W, cout)
void transform_output(const float* M, const Shape& s, int64_t g0, const float* B,
                      const float* R, bool relu, float* Y) {
  for (int t = 0; t < TILES && g0 + t < s.tiles; ++t) {
    const int64_t g = g0 + t;
    const int img = g / ((int64_t)s.th * s.tw), ty = g / s.tw % s.th, tx = g % s.tw;
    for (int cv = 0; cv < s.cout; cv += VL) {
      const int nc = std::min(VL, s.cout - cv);
      vf m[36], f[24], y[16];
      for (int k = 0; k < 36; ++k) m[k] = load(M + (k * TILES + t) * s.cop + cv);
      for (int a = 0; a < 6; ++a) output_rows(m + a * 6, 1, f + a * 4, 1);  // along the width
      for (int q = 0; q < 4; ++q) output_rows(f + q, 4, y + q, 4);          // along the height
      const vf bias = B ? load_n(B + cv, nc) : vf{};
      for (int p = 0; p < 4 && ty * 4 + p < s.h; ++p) {
        for (int q = 0; q < 4 && tx * 4 + q < s.w; ++q) {
          const int64_t at = (((int64_t)img * s.h + ty * 4 + p) * s.w + tx * 4 + q) * s.cout + cv;
          vf v = y[p * 4 + q] + bias;
          if (R) v += load_n(R + at, nc);
          if (relu) v = v > vf{} ? v : vf{};
          if (nc == VL) store(Y + at, v); else store_part(Y + at, v, nc);
        }
      }
    }
  }
}

}  // namespace

// Y (N, cout, H, W) = conv3x3(X (N, cin, H, W), U) + B, + R, ReLU if relu, on torch's threads:
// X, Y and R float32 channels_last, U packed (36, cin, cout rounded up to 8), B and R null
// where there are none. Returns 0, or 1 where a thread's buffers could not be allocated.
extern "C" int hrnet_mm_winograd_conv3x3(const float* X, const float* U, const float* B,
                                         const float* R, float* Y, int64_t n, int64_t cin,
                                         int64_t h, int64_t w, int64_t cout, bool relu) {
  Shape s;
  s.n = n; s.cin = cin; s.h = h; s.w = w;
  s.cout = cout;
  s.cop = (cout + VL - 1) / VL * VL;
  s.cp = (s.cin + VL - 1) / VL * VL;
  s.th = (s.h + 3) / 4; s.tw = (s.w + 3) / 4;
  s.tiles = (int64_t)s.n * s.th * s.tw;
  if (s.tiles == 0 || cout == 0) return 0;
  const int64_t blocks = (s.tiles + TILES - 1) / TILES;
  try {  // at::parallel_for hands a thread's exception to this one; none may leave a C function
    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      std::vector<float> V(36 * TILES * s.cp), M(36 * TILES * s.cop);
      for (int64_t b = b0; b < b1; ++b) {
        transform_input(X, s, b * TILES, V.data());
        multiply(V.data(), U, s, M.data());
        transform_output(M.data(), s, b * TILES, B, R, relu, Y);
      }
    });
  } catch (...) {
    return 1;
  }
  return 0;
}
