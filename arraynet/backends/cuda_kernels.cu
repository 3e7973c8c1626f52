// arraynet's own CUDA kernels (arraynet/backends/cuda_kernels.py drives them).
//
// One source, compiled once per element type: AN_REAL is float or double (-DAN_REAL=...).
// Two compilers read it:
//   - NVRTC, through cupy.RawModule, on a GPU;
//   - a host C++ compiler, through arraynet/backends/cuda_on_cpu.py, which runs every
//     block and thread in a loop: the parity tests run these kernels without a GPU.
// So the kernels keep to what both can run: no __shared__ memory, no __syncthreads, no
// atomics; each thread writes only its own outputs (every result is deterministic), and
// every kernel walks its range with a grid-stride loop, `an_each` (any grid size is
// correct). C++14 (generic lambdas).
//
// Layouts: images are NHWC and C-contiguous; a (rows, C) matrix is a row-major view of
// every axis but the last. Sizes arrive as 64-bit integers (`i64`).

typedef AN_REAL real;
typedef long long i64;

// Every kernel runs `body(idx)` for each idx < total, with 32-bit index arithmetic
// when the whole range fits (a GPU divides 64-bit integers in software, several times
// slower), else 64-bit: `body` takes its index type from its argument.
template <typename F>
__device__ __forceinline__ void an_each(i64 total, F body)
{
    const i64 threads = (i64)blockDim.x * gridDim.x;
    const i64 first = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (total + threads < 2147483647LL) {
        for (int i = (int)first; i < (int)total; i += (int)threads) body(i);
    } else {
        for (i64 i = first; i < total; i += threads) body(i);
    }
}

// ---------------------------------------------------------------------------------------
// Convolution: the patch matrix (im2col) as one gather, and its adjoint (col2im) as one
// gather, both with the zero padding folded in (no padded copy of the input).
//   cols[(n, ho, wo), (i, j, c)] = x[n, ho*s - pt + i, wo*s - pl + j, c]   (0 outside)

extern "C" __global__ void an_im2col(
    const real* __restrict__ x, real* __restrict__ cols,
    i64 n, i64 h, i64 w, i64 c, i64 ho, i64 wo,
    i64 kh, i64 kw, i64 stride, i64 pt, i64 pl)
{
    an_each(n * ho * wo * kh * kw * c, [&](auto idx) {
        typedef decltype(idx) I;
        I t = idx;
        const I ch = t % (I)c; t /= (I)c;
        const I j = t % (I)kw; t /= (I)kw;
        const I i = t % (I)kh; t /= (I)kh;
        const I ow = t % (I)wo; t /= (I)wo;
        const I oh = t % (I)ho;
        const I img = t / (I)ho;
        const I r = oh * (I)stride - (I)pt + i;
        const I q = ow * (I)stride - (I)pl + j;
        real v = 0;
        if (r >= 0 && r < (I)h && q >= 0 && q < (I)w) v = x[(((i64)img * h + r) * w + q) * c + ch];
        cols[idx] = v;
    });
}

// dx[n, r, q, c] = sum of dcols[(n, oh, ow), (i, j, c)] over the (i, j) with
// oh*s - pt + i = r and ow*s - pl + j = q: a gather, one thread per input element.
extern "C" __global__ void an_col2im(
    const real* __restrict__ dcols, real* __restrict__ dx,
    i64 n, i64 h, i64 w, i64 c, i64 ho, i64 wo,
    i64 kh, i64 kw, i64 stride, i64 pt, i64 pl)
{
    const i64 row_len = kh * kw * c;
    an_each(n * h * w * c, [&](auto idx) {
        typedef decltype(idx) I;
        I t = idx;
        const I ch = t % (I)c; t /= (I)c;
        const I q = t % (I)w; t /= (I)w;
        const I r = t % (I)h;
        const i64 img = t / (I)h;
        real acc = 0;
        for (I i = 0; i < (I)kh; ++i) {
            const I a = r + (I)pt - i;  // oh * stride
            if (a < 0 || a % (I)stride != 0 || a / (I)stride >= (I)ho) continue;
            const i64 oh = a / (I)stride;
            for (I j = 0; j < (I)kw; ++j) {
                const I b = q + (I)pl - j;  // ow * stride
                if (b < 0 || b % (I)stride != 0 || b / (I)stride >= (I)wo) continue;
                const i64 ow = b / (I)stride;
                acc += dcols[((img * ho + oh) * wo + ow) * row_len + (i * kw + j) * c + ch];
            }
        }
        dx[idx] = acc;
    });
}

// y[r, f] += bias[f] for a (rows, F) matrix, in place.
extern "C" __global__ void an_add_bias(real* __restrict__ y, const real* __restrict__ bias,
                                       i64 rows, i64 f)
{
    an_each(rows * f, [&](auto idx) { y[idx] += bias[idx % (decltype(idx))f]; });
}

// ---------------------------------------------------------------------------------------
// Max pooling, p x p windows without overlap (a ragged edge is dropped). The forward keeps
// the slot (row * p + col) of each window's first maximum; a NaN counts as the maximum,
// as NumPy's max and argmax take it.

extern "C" __global__ void an_maxpool_forward(
    const real* __restrict__ x, real* __restrict__ y, int* __restrict__ slot, int save,
    i64 n, i64 h, i64 w, i64 c, i64 p)
{
    const i64 ho = h / p, wo = w / p;
    an_each(n * ho * wo * c, [&](auto idx) {
        typedef decltype(idx) I;
        I t = idx;
        const I ch = t % (I)c; t /= (I)c;
        const I ow = t % (I)wo; t /= (I)wo;
        const I oh = t % (I)ho;
        const i64 img = t / (I)ho;
        const real* base = x + ((img * h + oh * p) * w + ow * p) * c + ch;
        real best = base[0];
        int at = 0;
        for (i64 i = 0; i < p; ++i) {
            for (i64 j = 0; j < p; ++j) {
                const real v = base[(i * w + j) * c];
                if (best != best) continue;  // a NaN already holds the window
                if (v > best || v != v) { best = v; at = (int)(i * p + j); }
            }
        }
        y[idx] = best;
        if (save) slot[idx] = at;
    });
}

// dx[n, r, q, c] = dy[n, r/p, q/p, c] where (r, q) is its window's kept slot, else 0.
extern "C" __global__ void an_maxpool_backward(
    const real* __restrict__ dy, const int* __restrict__ slot, real* __restrict__ dx,
    i64 n, i64 h, i64 w, i64 c, i64 p)
{
    const i64 ho = h / p, wo = w / p;
    an_each(n * h * w * c, [&](auto idx) {
        typedef decltype(idx) I;
        I t = idx;
        const I ch = t % (I)c; t /= (I)c;
        const I q = t % (I)w; t /= (I)w;
        const I r = t % (I)h;
        const I img = t / (I)h;
        const I oh = r / (I)p, ow = q / (I)p;
        real v = 0;
        if (oh < (I)ho && ow < (I)wo) {
            const I o = ((img * (I)ho + oh) * (I)wo + ow) * (I)c + ch;
            if (slot[o] == (int)((r - oh * (I)p) * (I)p + (q - ow * (I)p))) v = dy[o];
        }
        dx[idx] = v;
    });
}

// ---------------------------------------------------------------------------------------
// Per-channel sums of a (rows, C) matrix in two deterministic stages, accumulated in double:
// stage 1 gives each thread one channel of one chunk of rows (consecutive threads read
// consecutive channels of a row: coalesced), stage 2 adds the chunks in order.
//   mode 0: sum of a;  mode 1: sum of (a - shift[c])^2, the difference in real;
//   mode 2: sum of a * b (b shaped as a).

extern "C" __global__ void an_channel_partials(
    const real* __restrict__ a, const real* __restrict__ b, const real* __restrict__ shift,
    double* __restrict__ partial, int mode, i64 rows, i64 c, i64 rows_per_chunk, i64 chunks)
{
    an_each(chunks * c, [&](auto idx) {
        const i64 ch = idx % c;
        const i64 k = idx / c;
        const i64 r0 = k * rows_per_chunk;
        const i64 r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
        double acc = 0.0;
        if (mode == 0) {
            for (i64 r = r0; r < r1; ++r) acc += (double)a[r * c + ch];
        } else if (mode == 1) {
            const real s = shift[ch];
            for (i64 r = r0; r < r1; ++r) {
                const real d = a[r * c + ch] - s;
                acc += (double)(d * d);
            }
        } else {
            for (i64 r = r0; r < r1; ++r) acc += (double)(a[r * c + ch] * b[r * c + ch]);
        }
        partial[idx] = acc;
    });
}

// out[ch] = (real)(scale * sum over k of partial[k, ch]).
extern "C" __global__ void an_channel_finish(
    const double* __restrict__ partial, real* __restrict__ out, i64 chunks, i64 c, double scale)
{
    an_each(c, [&](auto ch) {
        double acc = 0.0;
        for (i64 k = 0; k < chunks; ++k) acc += partial[k * c + ch];
        out[ch] = (real)(acc * scale);
    });
}

// ---------------------------------------------------------------------------------------
// Batch normalisation over every axis but the last.

// Per channel, from the summed squared deviations: the batch variance, 1/sqrt(var + eps),
// and the new running statistics (momentum * running + (1 - momentum) * batch, with the
// unbiased variance), in the order and precision the portable definition computes them.
extern "C" __global__ void an_bn_stats(
    const double* __restrict__ partial, const real* __restrict__ mean,
    const real* __restrict__ running_mean, const real* __restrict__ running_var,
    real* __restrict__ inv, real* __restrict__ new_mean, real* __restrict__ new_var,
    i64 chunks, i64 c, double count, real unbias, real momentum, real eps)
{
    an_each(c, [&](auto ch) {
        double acc = 0.0;
        for (i64 k = 0; k < chunks; ++k) acc += partial[k * c + ch];
        const real var = (real)(acc / count);
        inv[ch] = (real)1 / (real)sqrt(var + eps);
        new_mean[ch] = momentum * running_mean[ch] + ((real)1 - momentum) * mean[ch];
        new_var[ch] = momentum * running_var[ch] + ((real)1 - momentum) * (var * unbias);
    });
}

// xhat = (x - mean) * inv, y = xhat * gamma + beta.
extern "C" __global__ void an_bn_normalize(
    const real* __restrict__ x, const real* __restrict__ mean, const real* __restrict__ inv,
    const real* __restrict__ gamma, const real* __restrict__ beta,
    real* __restrict__ xhat, real* __restrict__ y, i64 total, i64 c)
{
    an_each(total, [&](auto idx) {
        const auto ch = idx % (decltype(idx))c;
        const real xh = (x[idx] - mean[ch]) * inv[ch];
        xhat[idx] = xh;
        y[idx] = xh * gamma[ch] + beta[ch];
    });
}

// dx = gamma * inv / count * (count * dy - dbeta - xhat * dgamma).
extern "C" __global__ void an_bn_backward(
    const real* __restrict__ dy, const real* __restrict__ xhat, const real* __restrict__ gamma,
    const real* __restrict__ inv, const real* __restrict__ dgamma,
    const real* __restrict__ dbeta, real* __restrict__ dx, i64 total, i64 c, real count)
{
    an_each(total, [&](auto idx) {
        const auto ch = idx % (decltype(idx))c;
        const real scale = gamma[ch] * inv[ch] / count;
        dx[idx] = scale * (count * dy[idx] - dbeta[ch] - xhat[idx] * dgamma[ch]);
    });
}

// Evaluation mode: (x - running_mean) * (1 / sqrt(running_var + eps)) * gamma + beta.
extern "C" __global__ void an_bn_inference(
    const real* __restrict__ x, const real* __restrict__ running_mean,
    const real* __restrict__ running_var, const real* __restrict__ gamma,
    const real* __restrict__ beta, real* __restrict__ y, i64 total, i64 c, real eps)
{
    an_each(total, [&](auto idx) {
        const auto ch = idx % (decltype(idx))c;
        const real inv = (real)1 / (real)sqrt(running_var[ch] + eps);
        y[idx] = (x[idx] - running_mean[ch]) * inv * gamma[ch] + beta[ch];
    });
}

// ---------------------------------------------------------------------------------------
// Softmax with cross-entropy, one thread per row of a (n, k) matrix: the row's loss
// -sum(t * log_softmax(z)) in double, and the gradient (softmax(z) - t) / n, with the
// targets mixed with the uniform distribution when smoothing > 0.

extern "C" __global__ void an_softmax_xent(
    const real* __restrict__ z, const real* __restrict__ target, real* __restrict__ grad,
    double* __restrict__ row_loss, i64 n, i64 k, real smoothing)
{
    const real keep = (real)1 - smoothing;
    const real spread = smoothing / (real)k;
    an_each(n, [&](auto row) {
        const real* zr = z + row * k;
        const real* tr = target + row * k;
        real top = zr[0];
        for (i64 j = 1; j < k; ++j) top = zr[j] > top ? zr[j] : top;
        real total = 0;
        for (i64 j = 0; j < k; ++j) total += (real)exp(zr[j] - top);
        const real log_total = (real)log(total);
        double loss = 0.0;
        for (i64 j = 0; j < k; ++j) {
            const real t = smoothing != (real)0 ? tr[j] * keep + spread : tr[j];
            const real s = zr[j] - top;
            loss -= (double)(t * (s - log_total));
            grad[row * k + j] = ((real)exp(s) / total - t) / (real)n;
        }
        row_loss[row] = loss;
    });
}

// loss[0] = sum of the row losses / n, added in row order.
extern "C" __global__ void an_mean_loss(const double* __restrict__ row_loss,
                                        real* __restrict__ loss, i64 n)
{
    an_each(1, [&](auto one) {
        double acc = 0.0;
        for (i64 r = 0; r < n; ++r) acc += row_loss[r];
        loss[0] = (real)(acc / (double)n);
    });
}

// ---------------------------------------------------------------------------------------
// Adam over every parameter in one launch, in place. The tensors are given as tables of
// device addresses (params, grads, m, v) and `starts`, the cumulative sizes (count + 1
// entries); each element finds its tensor by binary search. scalars = [lr / (1 - b1^t),
// 1 / sqrt(1 - b2^t)] on the device:
//   m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2, p <- p - s0 m / (sqrt(v) s1 + eps).

extern "C" __global__ void an_adam(
    const i64* __restrict__ tables, const i64* __restrict__ starts, i64 count,
    const real* __restrict__ scalars, real b1, real b2, real eps)
{
    const i64 total = starts[count];
    const real step = scalars[0];
    const real v_scale = scalars[1];
    an_each(total, [&](auto idx) {
        i64 lo = 0, hi = count - 1;  // the last tensor whose start is <= idx
        while (lo < hi) {
            const i64 mid = (lo + hi + 1) / 2;
            if (starts[mid] <= idx) lo = mid; else hi = mid - 1;
        }
        const i64 e = idx - starts[lo];
        real* p = (real*)tables[lo];
        const real* g = (const real*)tables[count + lo];
        real* m = (real*)tables[2 * count + lo];
        real* v = (real*)tables[3 * count + lo];
        const real gi = g[e];
        const real mi = b1 * m[e] + ((real)1 - b1) * gi;
        const real vi = b2 * v[e] + ((real)1 - b2) * (gi * gi);
        m[e] = mi;
        v[e] = vi;
        p[e] = p[e] - step * mi / ((real)sqrt(vi) * v_scale + eps);
    });
}
