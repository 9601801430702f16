using System.Runtime.InteropServices;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Paging.Simd;

/// <summary>The instruction set a <see cref="PageCopy"/> call uses.</summary>
public enum PageCopyPath
{
    /// <summary>8-byte scalar moves (any CPU).</summary>
    Scalar = 0,
    /// <summary>16-byte vectors (SSE2 on x86, AdvSimd on ARM64).</summary>
    Vector128 = 1,
    /// <summary>32-byte AVX2 vectors.</summary>
    Avx2 = 2,
    /// <summary>64-byte AVX-512 vectors.</summary>
    Avx512 = 3,
}

/// <summary>
/// The copies and zero checks the runtime makes itself (network or compressed buffers into the staging mapping,
/// write-back snapshots, huge-page assembly), with System.Runtime.Intrinsics. The widest path the CPU has is chosen
/// once; each path can be forced (tests, benchmarks).
/// <para>Store kinds: <c>nonTemporal: true</c> writes around the cache (one store fence per copy). It wins when the
/// destination will not be read soon and the copy is larger than what the cache keeps anyway — staging fills of cold
/// data, write-back snapshots: on this machine a cold 4 KiB copy costs 265 ns with AVX-512 non-temporal stores vs
/// 380 ns with glibc memcpy (../shared/limits rows 1.7 and 1.2). Normal stores win for hot data the next instruction
/// reads (the faulting thread reads its page right after the fill) and for copies that fit in L1/L2.
/// docs/BENCHMARKS.md has this machine's table.</para>
/// </summary>
public static unsafe class PageCopy
{
    /// <summary>The fastest path on this CPU, chosen once by a short measurement (see <see cref="Calibrate"/>): the
    /// widest supported path is not always the fastest — on this machine's Zen-class CPU AVX2 copies measured up to
    /// 15% faster than AVX-512 (docs/BENCHMARKS.md, section 3).</summary>
    public static PageCopyPath Best { get; } = Calibrate(out s_calibration);

    private static readonly string s_calibration;

    /// <summary>What the startup measurement saw: each candidate's best time for a 1 MiB non-temporal copy.</summary>
    public static string Calibration => s_calibration;

    /// <summary>Times the two widest supported vector paths (AVX-512 and AVX2 on x86; otherwise the widest path is
    /// taken) on a 1 MiB copy with non-temporal stores (the fills' and write-back's case: data larger than what the
    /// cache keeps), nine times after a warm-up, and returns the faster; AVX2 must win by 5% to be taken over AVX-512
    /// (a margin over timing noise on a loaded machine). About 2 ms, once.</summary>
    public static PageCopyPath Calibrate(out string report)
    {
        PageCopyPath[] candidates = [PageCopyPath.Avx512, PageCopyPath.Avx2];
        var supported = Array.FindAll(candidates, IsSupported);
        if (supported.Length == 0)
        {
            var widest = Vector128.IsHardwareAccelerated ? PageCopyPath.Vector128 : PageCopyPath.Scalar;
            report = $"{widest} (the widest path)";
            return widest;
        }
        if (supported.Length == 1)
        {
            report = $"{supported[0]} (the only wide path)";
            return supported[0];
        }
        const int bytes = 1 << 20;
        byte* source = (byte*)NativeMemory.AlignedAlloc(bytes, 4096);
        byte* destination = (byte*)NativeMemory.AlignedAlloc(bytes, 4096);
        try
        {
            new Span<byte>(source, bytes).Fill(0x5A);
            new Span<byte>(destination, bytes).Clear();
            var best = supported[0];
            long bestTicks = long.MaxValue;
            var parts = new List<string>();
            foreach (var path in supported)
            {
                Copy(destination, source, bytes, nonTemporal: true, path); // warm-up (JIT, page faults)
                long min = long.MaxValue;
                for (int i = 0; i < 9; i++)
                {
                    long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                    Copy(destination, source, bytes, nonTemporal: true, path);
                    min = Math.Min(min, System.Diagnostics.Stopwatch.GetTimestamp() - t0);
                }
                parts.Add($"{path} {min * 1e6 / System.Diagnostics.Stopwatch.Frequency:0} us");
                if (min < bestTicks * 0.95)
                {
                    best = path;
                    bestTicks = min;
                }
            }
            report = $"{best} (1 MiB non-temporal: {string.Join(", ", parts)})";
            return best;
        }
        finally
        {
            NativeMemory.AlignedFree(source);
            NativeMemory.AlignedFree(destination);
        }
    }

    /// <summary>True when <paramref name="path"/> can run on this CPU.</summary>
    public static bool IsSupported(PageCopyPath path) => path switch
    {
        PageCopyPath.Scalar => true,
        PageCopyPath.Vector128 => Vector128.IsHardwareAccelerated,
        PageCopyPath.Avx2 => Avx2.IsSupported,
        PageCopyPath.Avx512 => Avx512F.IsSupported && Vector512.IsHardwareAccelerated,
        _ => false,
    };

    /// <summary>Copies <paramref name="source"/> into <paramref name="destination"/> (same length) with the best path.</summary>
    public static void Copy(ReadOnlySpan<byte> source, Span<byte> destination, bool nonTemporal)
    {
        if (source.Length > destination.Length)
        {
            throw new ArgumentException($"destination ({destination.Length} bytes) is shorter than source ({source.Length} bytes)", nameof(destination));
        }
        fixed (byte* s = source)
        fixed (byte* d = destination)
        {
            Copy(d, s, (nuint)source.Length, nonTemporal, Best);
        }
    }

    /// <summary>Copies <paramref name="length"/> bytes. The regions must not overlap. The source may have any
    /// alignment; the destination is brought to vector alignment with one unaligned head store, so the loop's
    /// (and every non-temporal) store is aligned. Lengths that are not a multiple of 64 finish with a scalar tail.</summary>
    public static void Copy(byte* destination, byte* source, nuint length, bool nonTemporal, PageCopyPath path)
    {
        if (!IsSupported(path))
        {
            throw new PlatformNotSupportedException($"this CPU does not support the {path} copy path");
        }
        switch (path)
        {
            case PageCopyPath.Avx512: CopyAvx512(destination, source, length, nonTemporal); break;
            case PageCopyPath.Avx2: CopyAvx2(destination, source, length, nonTemporal); break;
            case PageCopyPath.Vector128: Copy128(destination, source, length, nonTemporal); break;
            default: CopyScalar(destination, source, length); break;
        }
    }

    private static void CopyScalar(byte* d, byte* s, nuint n)
    {
        nuint i = 0;
        for (; i + 32 <= n; i += 32)
        {
            ulong a = Unsafe.ReadUnaligned<ulong>(s + i), b = Unsafe.ReadUnaligned<ulong>(s + i + 8);
            ulong c = Unsafe.ReadUnaligned<ulong>(s + i + 16), e = Unsafe.ReadUnaligned<ulong>(s + i + 24);
            Unsafe.WriteUnaligned(d + i, a);
            Unsafe.WriteUnaligned(d + i + 8, b);
            Unsafe.WriteUnaligned(d + i + 16, c);
            Unsafe.WriteUnaligned(d + i + 24, e);
        }
        for (; i < n; i++)
        {
            d[i] = s[i];
        }
    }

    /// <summary>Bytes to copy before the destination is aligned to <paramref name="alignment"/> (0 if already).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static nuint Head(byte* d, nuint alignment, nuint n) => Math.Min(n, (alignment - ((nuint)d & (alignment - 1))) & (alignment - 1));

    private static void CopyAvx512(byte* d, byte* s, nuint n, bool nt)
    {
        nuint head = Head(d, 64, n);
        if (head != 0)
        {
            CopyScalar(d, s, head);
            d += head; s += head; n -= head;
        }
        nuint i = 0;
        if (nt)
        {
            for (; i + 256 <= n; i += 256)
            {
                var a = Vector512.Load(s + i); var b = Vector512.Load(s + i + 64);
                var c = Vector512.Load(s + i + 128); var e = Vector512.Load(s + i + 192);
                Avx512F.StoreAlignedNonTemporal(d + i, a); Avx512F.StoreAlignedNonTemporal(d + i + 64, b);
                Avx512F.StoreAlignedNonTemporal(d + i + 128, c); Avx512F.StoreAlignedNonTemporal(d + i + 192, e);
            }
            for (; i + 64 <= n; i += 64)
            {
                Avx512F.StoreAlignedNonTemporal(d + i, Vector512.Load(s + i));
            }
            // Non-temporal stores are weakly ordered: fence once so the bytes are visible before the caller
            // publishes them (a CONTINUE, a page-table bit).
            Sse.StoreFence();
        }
        else
        {
            for (; i + 256 <= n; i += 256)
            {
                var a = Vector512.Load(s + i); var b = Vector512.Load(s + i + 64);
                var c = Vector512.Load(s + i + 128); var e = Vector512.Load(s + i + 192);
                Vector512.StoreAligned(a, d + i); Vector512.StoreAligned(b, d + i + 64);
                Vector512.StoreAligned(c, d + i + 128); Vector512.StoreAligned(e, d + i + 192);
            }
            for (; i + 64 <= n; i += 64)
            {
                Vector512.StoreAligned(Vector512.Load(s + i), d + i);
            }
        }
        CopyScalar(d + i, s + i, n - i);
    }

    private static void CopyAvx2(byte* d, byte* s, nuint n, bool nt)
    {
        nuint head = Head(d, 32, n);
        if (head != 0)
        {
            CopyScalar(d, s, head);
            d += head; s += head; n -= head;
        }
        nuint i = 0;
        if (nt)
        {
            for (; i + 128 <= n; i += 128)
            {
                var a = Vector256.Load(s + i); var b = Vector256.Load(s + i + 32);
                var c = Vector256.Load(s + i + 64); var e = Vector256.Load(s + i + 96);
                Avx.StoreAlignedNonTemporal(d + i, a); Avx.StoreAlignedNonTemporal(d + i + 32, b);
                Avx.StoreAlignedNonTemporal(d + i + 64, c); Avx.StoreAlignedNonTemporal(d + i + 96, e);
            }
            for (; i + 32 <= n; i += 32)
            {
                Avx.StoreAlignedNonTemporal(d + i, Vector256.Load(s + i));
            }
            Sse.StoreFence();
        }
        else
        {
            for (; i + 128 <= n; i += 128)
            {
                var a = Vector256.Load(s + i); var b = Vector256.Load(s + i + 32);
                var c = Vector256.Load(s + i + 64); var e = Vector256.Load(s + i + 96);
                Vector256.StoreAligned(a, d + i); Vector256.StoreAligned(b, d + i + 32);
                Vector256.StoreAligned(c, d + i + 64); Vector256.StoreAligned(e, d + i + 96);
            }
            for (; i + 32 <= n; i += 32)
            {
                Vector256.StoreAligned(Vector256.Load(s + i), d + i);
            }
        }
        CopyScalar(d + i, s + i, n - i);
    }

    private static void Copy128(byte* d, byte* s, nuint n, bool nt)
    {
        nuint head = Head(d, 16, n);
        if (head != 0)
        {
            CopyScalar(d, s, head);
            d += head; s += head; n -= head;
        }
        nuint i = 0;
        if (nt && Sse2.IsSupported)
        {
            for (; i + 64 <= n; i += 64)
            {
                var a = Vector128.Load(s + i); var b = Vector128.Load(s + i + 16);
                var c = Vector128.Load(s + i + 32); var e = Vector128.Load(s + i + 48);
                Sse2.StoreAlignedNonTemporal(d + i, a); Sse2.StoreAlignedNonTemporal(d + i + 16, b);
                Sse2.StoreAlignedNonTemporal(d + i + 32, c); Sse2.StoreAlignedNonTemporal(d + i + 48, e);
            }
            Sse.StoreFence();
        }
        else if (nt && AdvSimd.Arm64.IsSupported)
        {
            for (; i + 64 <= n; i += 64)
            {
                AdvSimd.Arm64.StorePairNonTemporal(d + i, Vector128.Load(s + i), Vector128.Load(s + i + 16));
                AdvSimd.Arm64.StorePairNonTemporal(d + i + 32, Vector128.Load(s + i + 32), Vector128.Load(s + i + 48));
            }
        }
        for (; i + 64 <= n; i += 64)
        {
            var a = Vector128.Load(s + i); var b = Vector128.Load(s + i + 16);
            var c = Vector128.Load(s + i + 32); var e = Vector128.Load(s + i + 48);
            Vector128.StoreAligned(a, d + i); Vector128.StoreAligned(b, d + i + 16);
            Vector128.StoreAligned(c, d + i + 32); Vector128.StoreAligned(e, d + i + 48);
        }
        CopyScalar(d + i, s + i, n - i);
    }

    /// <summary>True when every byte is zero. Reads 256 bytes per step and stops at the first non-zero block.</summary>
    public static bool IsZero(ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            return IsZero(p, (nuint)data.Length, Best);
        }
    }

    /// <summary>True when every byte of [p, p+length) is zero, with the given path.</summary>
    public static bool IsZero(byte* p, nuint n, PageCopyPath path)
    {
        if (!IsSupported(path))
        {
            throw new PlatformNotSupportedException($"this CPU does not support the {path} path");
        }
        nuint i = 0;
        switch (path)
        {
            case PageCopyPath.Avx512:
                for (; i + 256 <= n; i += 256)
                {
                    var or = Vector512.Load(p + i) | Vector512.Load(p + i + 64) | Vector512.Load(p + i + 128) | Vector512.Load(p + i + 192);
                    if (or != Vector512<byte>.Zero)
                    {
                        return false;
                    }
                }
                break;
            case PageCopyPath.Avx2:
                for (; i + 128 <= n; i += 128)
                {
                    var or = Vector256.Load(p + i) | Vector256.Load(p + i + 32) | Vector256.Load(p + i + 64) | Vector256.Load(p + i + 96);
                    if (or != Vector256<byte>.Zero)
                    {
                        return false;
                    }
                }
                break;
            case PageCopyPath.Vector128:
                for (; i + 64 <= n; i += 64)
                {
                    var or = Vector128.Load(p + i) | Vector128.Load(p + i + 16) | Vector128.Load(p + i + 32) | Vector128.Load(p + i + 48);
                    if (or != Vector128<byte>.Zero)
                    {
                        return false;
                    }
                }
                break;
        }
        for (; i + 8 <= n; i += 8)
        {
            if (Unsafe.ReadUnaligned<ulong>(p + i) != 0)
            {
                return false;
            }
        }
        for (; i < n; i++)
        {
            if (p[i] != 0)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>Offset of the first byte where the two ranges differ, or -1 (vectorized; used by tests and checks).</summary>
    public static long FirstDifference(byte* a, byte* b, nuint n, PageCopyPath path)
    {
        if (!IsSupported(path))
        {
            throw new PlatformNotSupportedException($"this CPU does not support the {path} path");
        }
        nuint i = 0;
        switch (path)
        {
            case PageCopyPath.Avx512:
                for (; i + 64 <= n; i += 64)
                {
                    if (Vector512.Load(a + i) != Vector512.Load(b + i))
                    {
                        break;
                    }
                }
                break;
            case PageCopyPath.Avx2:
                for (; i + 32 <= n; i += 32)
                {
                    if (Vector256.Load(a + i) != Vector256.Load(b + i))
                    {
                        break;
                    }
                }
                break;
            case PageCopyPath.Vector128:
                for (; i + 16 <= n; i += 16)
                {
                    if (Vector128.Load(a + i) != Vector128.Load(b + i))
                    {
                        break;
                    }
                }
                break;
        }
        for (; i < n; i++)
        {
            if (a[i] != b[i])
            {
                return (long)i;
            }
        }
        return -1;
    }
}
