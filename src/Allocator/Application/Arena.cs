using Paging.Interop;

namespace Paging;

/// <summary>The memory of a region: the user mapping and, for shmem and hugetlbfs, the memfd behind it (the pager
/// maps the same memfd a second time, unregistered, to fill pages).</summary>
internal sealed class Arena : IDisposable
{
    private const int HugePageSize = 2 * 1024 * 1024;

    private Arena(ArenaKind kind, int pageSize, Mapping user, FileDescriptor? memfd, Mapping? shadow = null)
    {
        Kind = kind;
        PageSize = pageSize;
        User = user;
        Memfd = memfd;
        Shadow = shadow;
    }

    public ArenaKind Kind { get; }

    public int PageSize { get; }

    public Mapping User { get; }

    public FileDescriptor? Memfd { get; }

    /// <summary>An anonymous region whose writes are tracked: where the pager moves the pages it evicts
    /// (UFFDIO_MOVE, atomic against a racing write), the same length as the region; the region's unmapper frees
    /// them. Nothing else touches it.</summary>
    public Mapping? Shadow { get; }

    public static int PageSizeOf(ArenaKind kind) => kind == ArenaKind.HugeTlb ? HugePageSize : Environment.SystemPageSize;

    /// <summary>Reserves <paramref name="length"/> bytes (a multiple of the page size, checked by the caller).</summary>
    /// <param name="kind">The arena kind.</param>
    /// <param name="length">Bytes, a multiple of the page size.</param>
    /// <param name="tracksWrites">An anonymous arena gets its shadow (the pages its eviction moves out).</param>
    /// <param name="readOnly">Map the user range PROT_READ (<see cref="RegionOptions.ReadOnly"/>); the pager fills it
    /// all the same (UFFDIO_COPY and UFFDIO_CONTINUE install pages whatever the range's protection).</param>
    public static Arena Create(ArenaKind kind, long length, bool tracksWrites = false, bool readOnly = false)
    {
        int pageSize = PageSizeOf(kind);
        var protection = readOnly ? Protection.Read : Protection.ReadWrite;
        if (kind == ArenaKind.Anonymous)
        {
            var anon = Mapping.Map(length, protection, MapFlags.Private | MapFlags.Anonymous | MapFlags.NoReserve, null, 0,
                $"mmap of a {length}-byte anonymous arena");
            if (!tracksWrites)
            {
                return new Arena(kind, pageSize, anon, null);
            }
            try
            {
                var shadow = Mapping.Map(length, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous | MapFlags.NoReserve, null, 0,
                    $"mmap of a {length}-byte shadow of an anonymous arena");
                // UFFDIO_MOVE moves only pages exclusive to this process: a fork(2) (Process.Start) would share them
                // with the child until it execs. The child has no use for either range.
                _ = Libc.Madvise(anon.Address, (nuint)length, Advice.DontFork);
                _ = Libc.Madvise(shadow.Address, (nuint)length, Advice.DontFork);
                return new Arena(kind, pageSize, anon, null, shadow);
            }
            catch
            {
                anon.Dispose();
                throw;
            }
        }
        bool huge = kind == ArenaKind.HugeTlb;
        var memfd = FileDescriptor.Check(
            Libc.MemfdCreate(huge ? "paging-hugetlb" : "paging-shmem", MemfdFlags.CloseOnExec | MemfdFlags.AllowSealing | (huge ? MemfdFlags.HugeTlb : 0)),
            "memfd_create", huge ? "hugetlbfs memfds need CONFIG_HUGETLBFS" : null);
        try
        {
            if (Libc.Ftruncate(memfd, length) != 0)
            {
                throw Libc.Error($"ftruncate of the {kind} memfd to {length} bytes");
            }
            // No one may shrink the file under a mapping (later accesses would SIGBUS) or grow it.
            if (Libc.Fcntl(memfd, Libc.F_ADD_SEALS, (int)(SealFlags.Shrink | SealFlags.Grow)) != 0)
            {
                throw Libc.Error($"F_ADD_SEALS on the {kind} memfd");
            }
            // Hugetlbfs reserves its pages at mmap (no MAP_NORESERVE), so a shortage is an error here rather than a
            // SIGBUS at first touch. Shmem memfds are VM_NORESERVE already.
            var flags = MapFlags.Shared | (huge ? 0 : MapFlags.NoReserve);
            string? hint = huge
                ? $"a {length >> 20} MiB hugetlbfs region needs {length / pageSize} free 2 MiB huge pages: raise /proc/sys/vm/nr_hugepages (now {ProcMeminfo.Read("HugePages_Free")} free of {ProcMeminfo.Read("HugePages_Total")})"
                : null;
            var user = Mapping.Map(length, protection, flags, memfd, 0, $"mmap of a {length}-byte {kind} arena", hint);
            return new Arena(kind, pageSize, user, memfd);
        }
        catch
        {
            memfd.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        User.Dispose();
        Shadow?.Dispose();
        Memfd?.Dispose();
    }
}
