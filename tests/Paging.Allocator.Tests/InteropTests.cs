using System.Runtime.CompilerServices;
using Paging.Interop;

namespace Paging.Allocator.Tests;

/// <summary>Struct layouts against the 6.18 uapi (sizes from KERNEL.md) and the capabilities probe.</summary>
public sealed class InteropTests
{
    [Fact]
    public void StructSizesMatchTheKernelUapi()
    {
        Assert.Equal(24, Unsafe.SizeOf<Libc.UffdioApi>());
        Assert.Equal(16, Unsafe.SizeOf<Libc.UffdioRange>());
        Assert.Equal(32, Unsafe.SizeOf<Libc.UffdioRegister>());
        Assert.Equal(40, Unsafe.SizeOf<Libc.UffdioCopy>());
        Assert.Equal(40, Unsafe.SizeOf<Libc.UffdioMove>());
        Assert.Equal(32, Unsafe.SizeOf<Libc.UffdioZeropage>());
        Assert.Equal(32, Unsafe.SizeOf<Libc.UffdioContinue>());
        Assert.Equal(32, Unsafe.SizeOf<Libc.UffdioPoison>());
        Assert.Equal(32, Unsafe.SizeOf<Libc.UffdMsg>());
        Assert.Equal(8, Unsafe.SizeOf<Libc.PollFd>());
        Assert.Equal(16, Unsafe.SizeOf<Libc.IoVec>());
        Assert.Equal(56, Unsafe.SizeOf<Libc.MsgHdr>());
        Assert.Equal(16, Unsafe.SizeOf<Libc.CmsgHdr>());
    }

    [Fact]
    public void IoctlNumbersFollowTheIowrEncoding()
    {
        static ulong Iowr(uint nr, uint size) => (ulong)((3u << 30) | (size << 16) | (0xAAu << 8) | nr);
        static ulong Ior(uint nr, uint size) => (ulong)((2u << 30) | (size << 16) | (0xAAu << 8) | nr);
        Assert.Equal(Libc.UFFDIO_API, Iowr(0x3F, 24));
        Assert.Equal(Libc.UFFDIO_REGISTER, Iowr(0x00, 32));
        Assert.Equal(Libc.UFFDIO_UNREGISTER, Ior(0x01, 16));
        Assert.Equal(Libc.UFFDIO_WAKE, Ior(0x02, 16));
        Assert.Equal(Libc.UFFDIO_COPY, Iowr(0x03, 40));
        Assert.Equal(Libc.UFFDIO_ZEROPAGE, Iowr(0x04, 32));
        Assert.Equal(Libc.UFFDIO_CONTINUE, Iowr(0x07, 32));
        Assert.Equal(Libc.UFFDIO_POISON, Iowr(0x08, 32));
    }

    [Fact]
    public void ProbeReportsWhatThisKernelHas()
    {
        // This machine runs 6.18 as root: every feature the runtime uses must be reported.
        var caps = UffdCapabilities.Current;
        Assert.True(caps.Has(UffdFeatures.MissingShmem | UffdFeatures.MinorShmem | UffdFeatures.MissingHugetlbfs |
            UffdFeatures.MinorHugetlbfs | UffdFeatures.Poison), caps.ToString());
        foreach (var kind in Enum.GetValues<ArenaKind>())
        {
            caps.EnsureSupports(kind);
        }
    }

    [Fact]
    public void AnArenaKindTheKernelLacksIsAClearError()
    {
        var oldKernel = new UffdCapabilities(UffdFeatures.MissingShmem); // e.g. 5.10: no MINOR faults
        oldKernel.EnsureSupports(ArenaKind.Anonymous);
        var e = Assert.Throws<PagingFeatureNotSupportedException>(() => oldKernel.EnsureSupports(ArenaKind.Shmem));
        Assert.Equal(UffdFeatures.MinorShmem, e.Missing);
        Assert.Contains("MinorShmem", e.Message);
        e = Assert.Throws<PagingFeatureNotSupportedException>(() => oldKernel.EnsureSupports(ArenaKind.HugeTlb));
        Assert.Equal(UffdFeatures.MissingHugetlbfs | UffdFeatures.MinorHugetlbfs, e.Missing);
    }

    [Fact]
    public void ASecondApiHandshakeFailsWithTheCallNamed()
    {
        using var uffd = Userfaultfd.Create(UffdFeatures.None);
        unsafe
        {
            var api = new Libc.UffdioApi { Api = Libc.UFFD_API };
            Assert.NotEqual(0, Libc.Ioctl(uffd.Handle, Libc.UFFDIO_API, &api));
            Assert.Equal(Errno.EINVAL, Libc.LastErrno);
        }
    }

    [Fact]
    public void ErrorsNameTheCallAndTheErrno()
    {
        var e = Libc.Error(Errno.EPERM, "userfaultfd()", "run as root");
        Assert.Equal(Errno.EPERM, e.Errno);
        Assert.Contains("userfaultfd() failed", e.Message);
        Assert.Contains("EPERM", e.Message);
        Assert.Contains("run as root", e.Message);
    }
}
