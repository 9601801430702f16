using System.Globalization;
using Microsoft.Win32.SafeHandles;
using Paging.Stores;

namespace Paging.Backends;

/// <summary>
/// A page-aligned slice of a file: region offset 0 is file offset <see cref="FileOffset"/>. Reads are pread(2)
/// straight into the destination (for shmem and hugetlbfs that is the page cache of the arena itself: no bounce
/// buffer); bytes past end-of-file read as zeros, and a read wholly past it is reported as a zero page. It offers
/// <see cref="PageStoreCapabilities.FileSource"/>, so the engine fills shmem arenas with splice(2) (file → pipe →
/// memfd, a kernel-side copy: 1.5 µs per 4 KiB page against 3.2 µs for a pread into the mapping, page cache hot,
/// bench/probe-splice.py). Direct-when-cold (<see cref="Settings.DirectWhenCold"/>; on by default for hugetlbfs
/// regions): a range the page cache holds none of is read with O_DIRECT straight into the destination.
/// </summary>
public sealed class FilePageStore : IPageStore
{
    /// <summary>The store kind on the wire.</summary>
    public const string Kind = "file";

    /// <summary>The setting keys, defined once for the descriptor factory and the store factory.</summary>
    public static class Settings
    {
        /// <summary>Absolute path of the file.</summary>
        public const string Path = "path";

        /// <summary>File offset of region offset 0 (page-aligned; default 0).</summary>
        public const string Offset = "offset";

        /// <summary>"true" opens the file for write-back (default "false").</summary>
        public const string Writable = "writable";

        /// <summary>"true" opens the file with O_DIRECT (default "false"): reads and write-backs bypass the page cache,
        /// so the arena's budget is the only memory the file's pages take (a database buffer pool's setup).</summary>
        public const string Direct = "direct";

        /// <summary>"true": a read of a range the page cache holds none of (cachestat(2)) uses O_DIRECT; any other
        /// read is buffered. "false": every read is buffered. "auto" (the default): true for hugetlbfs regions (2 MiB
        /// pages), false otherwise. A cold load then costs no page-cache pages and no second copy; a hot one is a copy
        /// from the page cache as before. Measured (docs/BENCHMARKS.md §26, the 2 GiB weights harness): a hugetlbfs
        /// load cold with Prefetch(all) 0.46–0.6× the time, 10% of the tensors 0.5×, hot the same; a shmem load slower (its fills splice
        /// the page cache into the memfd, which a direct read cannot), so "auto" leaves shmem and anonymous regions
        /// buffered.</summary>
        public const string DirectWhenCold = "direct_when_cold";
    }

    private readonly SafeFileHandle _file;

    /// <summary>The same file opened with O_DIRECT, for the pages the page cache does not hold (direct-when-cold).</summary>
    private readonly SafeFileHandle? _cold;

    /// <summary>Whether direct-when-cold is still on: false after cachestat(2) failed (ENOSYS before 6.5) or an O_DIRECT
    /// read did (then every read is buffered).</summary>
    private volatile bool _directWhenColdOn;

    /// <summary>Opens <paramref name="path"/>. Throws <see cref="PageStoreException"/> (Configuration) when it cannot be opened.</summary>
    /// <param name="path">The file.</param>
    /// <param name="fileOffset">The file offset of store offset 0.</param>
    /// <param name="writable">Open for write-back.</param>
    /// <param name="direct">Every read and write with O_DIRECT.</param>
    /// <param name="directWhenCold">A read of a range the page cache holds none of uses O_DIRECT (see
    /// <see cref="Settings.DirectWhenCold"/>); where the file system refuses O_DIRECT (tmpfs before Linux 6.6, some FUSE
    /// file systems) or the kernel has no cachestat(2) (before 6.5), every read is buffered and
    /// <see cref="ReadsColdDirect"/> says false.</param>
    public FilePageStore(string path, long fileOffset, bool writable, bool direct = false, bool directWhenCold = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fileOffset);
        Path = path;
        FileOffset = fileOffset;
        // O_DIRECT: no FileSource (splice would go through a bounce buffer anyway); the engine's fill buffers and
        // write-back snapshots are 4 KiB aligned, as direct I/O needs.
        directWhenCold &= !direct;
        // Splice (FileSource) reads through the page cache: a direct-when-cold store goes through Read instead.
        Capabilities = (direct || directWhenCold ? 0 : PageStoreCapabilities.FileSource) | (writable ? PageStoreCapabilities.Write : 0);
        try
        {
            _file = direct ? DirectIo.Open(path, writable) : System.IO.File.OpenHandle(path, FileMode.Open, writable ? FileAccess.ReadWrite : FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new PageStoreException(PageStoreError.Configuration, $"cannot open '{path}' for {(writable ? "read-write" : "reading")}: {e.Message}", e);
        }
        FileSource = direct || directWhenCold ? null : new FileSlice(_file, fileOffset);
        if (directWhenCold)
        {
            try
            {
                _cold = DirectIo.Open(path, writable: false);
                _directWhenColdOn = true;
            }
            catch (PageStoreException)
            {
                // No O_DIRECT on this file system: buffered reads, as without the option; ReadsColdDirect reports it.
            }
        }
    }

    /// <summary>Whether pages missing from the page cache are read with O_DIRECT (direct-when-cold, and the file
    /// system supports it).</summary>
    public bool ReadsColdDirect => _cold is not null && _directWhenColdOn;

    /// <summary>Describes a page-aligned slice of a file starting at <paramref name="offset"/>; pages past
    /// end-of-file read as zeros. The file must exist; <paramref name="writable"/> opens it for write-back.</summary>
    /// <exception cref="FileNotFoundException">the file does not exist.</exception>
    /// <exception cref="ArgumentOutOfRangeException">the offset is negative or not a multiple of 4 KiB (hugetlbfs
    /// regions need a multiple of 2 MiB; the pager checks that when it builds the store).</exception>
    /// <param name="path">The file.</param>
    /// <param name="offset">The file offset of region offset 0.</param>
    /// <param name="writable">Open for write-back.</param>
    /// <param name="direct">Every read and write with O_DIRECT (a buffer pool's file: the budget is its only cache).</param>
    /// <param name="directWhenCold">Ranges the page cache holds none of are read with O_DIRECT; null: for hugetlbfs
    /// regions only (<see cref="Settings.DirectWhenCold"/>).</param>
    public static PageStoreDescriptor Describe(string path, long offset = 0, bool writable = false, bool direct = false, bool? directWhenCold = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        if (offset % Environment.SystemPageSize != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"the file offset must be a multiple of the page size ({Environment.SystemPageSize} bytes)");
        }
        var full = System.IO.Path.GetFullPath(path);
        if (!System.IO.File.Exists(full))
        {
            throw new FileNotFoundException($"the page store file '{full}' does not exist", full);
        }
        return new(Kind, new Dictionary<string, string>
        {
            [Settings.Path] = full,
            [Settings.Offset] = offset.ToString(CultureInfo.InvariantCulture),
            [Settings.Writable] = writable ? "true" : "false",
            [Settings.Direct] = direct ? "true" : "false",
            [Settings.DirectWhenCold] = directWhenCold switch { true => "true", false => "false", null => "auto" },
        });
    }

    /// <summary>Builds a store from a descriptor's settings (inside the pager).</summary>
    public static FilePageStore Create(PageStoreContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        string path = context.Require(Settings.Path);
        long offset = context.GetInt64(Settings.Offset, 0, min: 0);
        if (offset % context.PageSize != 0)
        {
            throw new PageStoreException(PageStoreError.Configuration, $"the file store's offset {offset} is not a multiple of the page size {context.PageSize}");
        }
        bool directWhenCold = context.Get(Settings.DirectWhenCold, "auto") switch
        {
            "true" => true,
            "false" => false,
            "auto" => context.PageSize >= 2 << 20,
            var other => throw new PageStoreException(PageStoreError.Configuration, $"the file store's '{Settings.DirectWhenCold}' setting is '{other}', not true, false or auto"),
        };
        return new FilePageStore(path, offset, context.GetBoolean(Settings.Writable, false), context.GetBoolean(Settings.Direct, false), directWhenCold);
    }

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <summary>The file offset of store offset 0.</summary>
    public long FileOffset { get; }

    /// <inheritdoc />
    public FileSlice? FileSource { get; }

    /// <summary>Bytes of the file from <see cref="FileOffset"/> to its current end.</summary>
    public long Length => Math.Max(0, RandomAccess.GetLength(_file) - FileOffset);

    /// <inheritdoc />
    public PageStoreCapabilities Capabilities { get; }

    /// <inheritdoc />
    public PageReadStatus Read(long offset, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        int total = 0;
        try
        {
            // Direct-when-cold: a range the page cache holds none of is read with O_DIRECT (no page-cache pages, no
            // second copy); a range it holds any of is read buffered, as always.
            bool cold = false;
            if (_cold is not null && _directWhenColdOn)
            {
                long cached = DirectIo.CachedPages(_file, FileOffset + offset, destination.Length, out int errno);
                if (cached == 0)
                {
                    cold = true;
                }
                else if (cached < 0 && errno is not EIntr)
                {
                    _directWhenColdOn = false; // no cachestat (before Linux 6.5): buffered from now on
                }
            }
            while (total < destination.Length)
            {
                var rest = destination[total..];
                long at = FileOffset + offset + total;
                int n = cold && IsAligned(rest, at) ? ReadDirect(rest, at) : RandomAccess.Read(_file, rest, at);
                if (n == 0)
                {
                    break;
                }
                total += n;
            }
        }
        catch (IOException e)
        {
            throw new PageStoreException(PageStoreError.Io, $"pread of {destination.Length} bytes at {FileOffset + offset} in '{Path}' failed: {e.Message}", e);
        }
        if (total == 0)
        {
            return PageReadStatus.Zero;
        }
        destination[total..].Clear();
        return PageReadStatus.Data;
    }

    private const int EIntr = 4;

    /// <summary>An O_DIRECT read; where the file system refuses it (EINVAL: an alignment it needs that 4 KiB does not
    /// meet), the read is buffered and so is every later one (<see cref="ReadsColdDirect"/> turns false) — a cold read
    /// must never fail where a buffered one would not.</summary>
    private int ReadDirect(Span<byte> destination, long offset)
    {
        try
        {
            return RandomAccess.Read(_cold!, destination, offset);
        }
        catch (IOException)
        {
            _directWhenColdOn = false;
            return RandomAccess.Read(_file, destination, offset);
        }
    }

    /// <summary>What O_DIRECT needs: buffer, offset and length on 4 KiB boundaries (the largest logical block size
    /// in use; the engine's buffers and mappings are page aligned, so only a partial last block falls back).</summary>
    private static unsafe bool IsAligned(Span<byte> buffer, long offset)
    {
        fixed (byte* p = buffer)
        {
            return (((nint)p | (nint)offset | buffer.Length) & 4095) == 0;
        }
    }

    /// <inheritdoc />
    public void Write(long offset, ReadOnlySpan<byte> source)
    {
        if ((Capabilities & PageStoreCapabilities.Write) == 0)
        {
            throw new PageStoreException(PageStoreError.ReadOnly, $"'{Path}' was opened read-only");
        }
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        try
        {
            RandomAccess.Write(_file, source, FileOffset + offset);
        }
        catch (IOException e)
        {
            throw new PageStoreException(PageStoreError.Io, $"pwrite of {source.Length} bytes at {FileOffset + offset} in '{Path}' failed: {e.Message}", e);
        }
    }

    /// <summary>fdatasync(2) of the file: the data written and the file's size are on the device when it returns
    /// (timestamps may not be: nothing reads them back).</summary>
    public void Flush()
    {
        if ((Capabilities & PageStoreCapabilities.Write) == 0)
        {
            return;
        }
        try
        {
            RandomAccess.FlushToDisk(_file);
        }
        catch (IOException e)
        {
            throw new PageStoreException(PageStoreError.Io, $"fdatasync of '{Path}' failed: {e.Message}", e);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _cold?.Dispose();
        _file.Dispose();
    }
}
