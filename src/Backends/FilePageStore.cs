using Microsoft.Win32.SafeHandles;

namespace Paging.Backends;

/// <summary>
/// A page-aligned slice of a file: region offset 0 is file offset <see cref="FileOffset"/>. Reads are pread(2)
/// straight into the destination (for shmem and hugetlbfs that is the page cache of the arena itself: no bounce
/// buffer); bytes past end-of-file read as zeros, and a read wholly past it is reported as a zero page.
/// </summary>
public sealed class FilePageStore : IFileBackedPageStore
{
    private readonly SafeFileHandle _file;

    /// <summary>Opens <paramref name="path"/>. Throws <see cref="PageStoreException"/> (Configuration) when it cannot be opened.</summary>
    public FilePageStore(string path, long fileOffset, bool writable)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fileOffset);
        Path = path;
        FileOffset = fileOffset;
        CanWrite = writable;
        try
        {
            _file = System.IO.File.OpenHandle(path, FileMode.Open, writable ? FileAccess.ReadWrite : FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new PageStoreException(PageStoreError.Configuration, $"cannot open '{path}' for {(writable ? "read-write" : "reading")}: {e.Message}", e);
        }
    }

    /// <summary>Builds a store from the settings path, offset (default 0) and writable (default false).</summary>
    public static FilePageStore Create(PageStoreContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        string path = context.Require("path");
        if (!long.TryParse(context.Get("offset", "0"), System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out long offset) || offset < 0)
        {
            throw new PageStoreException(PageStoreError.Configuration, $"the file store's offset '{context.Get("offset", "")}' is not a non-negative integer");
        }
        if (offset % context.PageSize != 0)
        {
            throw new PageStoreException(PageStoreError.Configuration, $"the file store's offset {offset} is not a multiple of the page size {context.PageSize}");
        }
        return new FilePageStore(path, offset, context.Get("writable", "false") == "true");
    }

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <inheritdoc />
    public SafeFileHandle File => _file;

    /// <inheritdoc />
    public long FileOffset { get; }

    /// <summary>Bytes of the file from <see cref="FileOffset"/> to its current end.</summary>
    public long Length => Math.Max(0, RandomAccess.GetLength(_file) - FileOffset);

    /// <inheritdoc />
    public bool CanWrite { get; }

    /// <inheritdoc />
    public PageReadStatus Read(long offset, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        int total = 0;
        try
        {
            while (total < destination.Length)
            {
                int n = RandomAccess.Read(_file, destination[total..], FileOffset + offset + total);
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

    /// <inheritdoc />
    public void Write(long offset, ReadOnlySpan<byte> source)
    {
        if (!CanWrite)
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

    /// <inheritdoc />
    public void Dispose() => _file.Dispose();
}
