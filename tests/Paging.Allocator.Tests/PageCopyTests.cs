using System.Runtime.InteropServices;

namespace Paging.Allocator.Tests;

public sealed unsafe class PageCopyTests
{
    public static TheoryData<PageCopyPath, bool> PathsAndStores()
    {
        var data = new TheoryData<PageCopyPath, bool>();
        foreach (var path in Enum.GetValues<PageCopyPath>())
        {
            // Every path this CPU has; this machine (AVX-512) has all four, which the next test asserts.
            if (PageCopy.IsSupported(path))
            {
                data.Add(path, false);
                data.Add(path, true);
            }
        }
        return data;
    }

    [Fact]
    public void ThisMachineRunsEveryX86Path()
    {
        if (RuntimeInformation.ProcessArchitecture == Architecture.X64 && System.Runtime.Intrinsics.X86.Avx512F.IsSupported)
        {
            // Both wide paths run here; which one is Best is measured at startup (AVX2 often wins on this CPU).
            Assert.True(PageCopy.IsSupported(PageCopyPath.Avx512));
            Assert.Contains(PageCopy.Best, new[] { PageCopyPath.Avx512, PageCopyPath.Avx2 });
        }
        Assert.True(PageCopy.IsSupported(PageCopyPath.Scalar));
        Assert.True(PageCopy.IsSupported(PageCopyPath.Vector128));
    }

    [Theory]
    [MemberData(nameof(PathsAndStores))]
    public void CopiesExactlyForEverySizeAndMisalignment(PageCopyPath path, bool nonTemporal)
    {
        int[] sizes = [64, 192, 4096, 4096 + 64, 65536, 2 << 20, 100, 1, 0];
        int[] sourceOffsets = [0, 1, 7, 31, 63];
        int[] destinationOffsets = [0, 3, 64];
        const int slack = 128;
        int max = sizes.Max() + slack;
        byte* src = (byte*)NativeMemory.AlignedAlloc((nuint)max, 4096);
        byte* dst = (byte*)NativeMemory.AlignedAlloc((nuint)max, 4096);
        try
        {
            new Random(5).NextBytes(new Span<byte>(src, max));
            foreach (int size in sizes)
            {
                foreach (int so in sourceOffsets)
                {
                    foreach (int dof in destinationOffsets)
                    {
                        new Span<byte>(dst, max).Fill(0xAB);
                        PageCopy.Copy(dst + dof, src + so, (nuint)size, nonTemporal, path);
                        Assert.True(new ReadOnlySpan<byte>(dst + dof, size).SequenceEqual(new ReadOnlySpan<byte>(src + so, size)),
                            $"{path} nt={nonTemporal} size={size} src+{so} dst+{dof}: bytes differ");
                        // Nothing written outside the destination.
                        Assert.True(new ReadOnlySpan<byte>(dst, dof).IndexOfAnyExcept((byte)0xAB) < 0, "wrote before the destination");
                        Assert.True(new ReadOnlySpan<byte>(dst + dof + size, max - dof - size).IndexOfAnyExcept((byte)0xAB) < 0, "wrote past the destination");
                    }
                }
            }
        }
        finally
        {
            NativeMemory.AlignedFree(src);
            NativeMemory.AlignedFree(dst);
        }
    }

    [Theory]
    [MemberData(nameof(PathsAndStores))]
    public void ZeroCheckAndCompareFindOneByteAnywhere(PageCopyPath path, bool unused)
    {
        _ = unused;
        const int page = 4096;
        byte* p = (byte*)NativeMemory.AlignedAlloc(page, 4096);
        byte* q = (byte*)NativeMemory.AlignedAlloc(page, 4096);
        try
        {
            new Span<byte>(p, page).Clear();
            new Span<byte>(q, page).Clear();
            Assert.True(PageCopy.IsZero(p, page, path));
            Assert.Equal(-1, PageCopy.FirstDifference(p, q, page, path));
            for (int i = 0; i < page; i++)
            {
                p[i] = (byte)(1 + (i % 255));
                Assert.False(PageCopy.IsZero(p, page, path), $"{path}: non-zero byte at {i} not seen");
                Assert.Equal(i, PageCopy.FirstDifference(p, q, page, path));
                p[i] = 0;
            }
            Assert.True(PageCopy.IsZero(p + 1, page - 1, path)); // unaligned start, odd length
        }
        finally
        {
            NativeMemory.AlignedFree(p);
            NativeMemory.AlignedFree(q);
        }
    }

    [Fact]
    public void SpanOverloadChecksLengths()
    {
        Assert.Throws<ArgumentException>(() => PageCopy.Copy(new byte[128], new byte[64], nonTemporal: false));
        var src = Enumerable.Range(0, 4096).Select(i => (byte)i).ToArray();
        var dst = new byte[4096];
        PageCopy.Copy(src, dst, nonTemporal: true);
        Assert.Equal(src, dst);
        Assert.False(PageCopy.IsZero(src));
        Assert.True(PageCopy.IsZero(new byte[4096]));
    }
}

public sealed class PageCopyCalibrationTests
{
    [Fact]
    public void TheBestPathIsMeasuredAndSupported()
    {
        Assert.True(PageCopy.IsSupported(PageCopy.Best));
        Assert.StartsWith(PageCopy.Best.ToString(), PageCopy.Calibration, StringComparison.Ordinal);
        // A fresh calibration picks a supported path and reports every candidate it timed.
        var path = PageCopy.Calibrate(out string report);
        Assert.True(PageCopy.IsSupported(path));
        if (PageCopy.IsSupported(PageCopyPath.Avx2))
        {
            Assert.Contains("Avx2", report, StringComparison.Ordinal);
        }
    }
}
