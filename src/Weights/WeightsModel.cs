using Paging.Backends;
using Paging.Stores;

namespace Paging.Weights;

/// <summary>
/// A checkpoint (safetensors or GGUF) mapped into a Paging region: nothing is read until touched. The header is
/// parsed through the region itself, so any store works (a file today; network or compressed stores plug in the same
/// way), and a tensor's bytes arrive on first touch, read ahead when touched in order.
/// </summary>
public sealed unsafe class WeightsModel : IDisposable
{
    private readonly Dictionary<string, Tensor> _byName;

    private WeightsModel(Region region, long length, WeightsHeader header)
    {
        Region = region;
        Length = length;
        Header = header;
        Tensors = header.Tensors.Select(t => new Tensor(this, t)).ToList();
        _byName = Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>The region holding the file, read-only on 4 KiB arenas (<see cref="Region.IsReadOnly"/>).</summary>
    public Region Region { get; }

    /// <summary>File length in bytes.</summary>
    public long Length { get; }

    /// <summary>The parsed header.</summary>
    public WeightsHeader Header { get; }

    /// <summary>"safetensors" or "gguf".</summary>
    public string Format => Header.Format;

    /// <summary>Tensors in file order.</summary>
    public IReadOnlyList<Tensor> Tensors { get; }

    /// <summary>A tensor by name.</summary>
    public Tensor this[string name] => _byName.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"no tensor '{name}' in this {Format} file");

    /// <summary>Opens a checkpoint file through a file store.</summary>
    public static WeightsModel Open(PagingRuntime runtime, string path, ArenaKind arena = ArenaKind.Shmem)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        long length = new FileInfo(path).Length;
        return Open(runtime, PageStoreDescriptor.File(path), length, arena);
    }

    /// <summary>Opens a checkpoint of <paramref name="length"/> bytes served by any store.</summary>
    public static WeightsModel Open(PagingRuntime runtime, PageStoreDescriptor store, long length, ArenaKind arena = ArenaKind.Shmem)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        ArgumentNullException.ThrowIfNull(store);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (length < 8)
        {
            throw new WeightsFormatException($"the file is {length} bytes: too short for any checkpoint header");
        }
        int page = arena == ArenaKind.HugeTlb ? 2 << 20 : Environment.SystemPageSize;
        // Read-only on 4 KiB arenas: a checkpoint is never written through, and there a read-only page is 4-6x cheaper
        // to touch the first time. Not on hugetlbfs, where one entry maps 2 MiB and read-only measured slower with
        // read-ahead (docs/BENCHMARKS.md §20).
        var region = runtime.CreateRegion(new RegionOptions
        {
            Arena = arena, Length = (length + page - 1) / page * page, Store = store, ReadOnly = arena != ArenaKind.HugeTlb,
            // Streams here are tensors, which end: a window runs past each one it finishes. 4 MiB whatever the store (a
            // network store's automatic 16 MiB read 614 MiB for 10% of the tensors of the harness's checkpoint, against
            // 396 MiB with 4 MiB and ~299 MiB touched, in the same time; docs/BENCHMARKS.md §29).
            Prefetch = new PrefetchOptions { MaxReadAheadBytes = 4 << 20 },
        });
        try
        {
            byte* p = region.Pointer;
            var header = length >= 4 && *(uint*)p == 0x46554747
                ? GgufReader.Parse(p, length)
                : SafetensorsReader.Parse(p, length);
            return new WeightsModel(region, length, header);
        }
        catch
        {
            region.Dispose();
            throw;
        }
    }

    /// <summary>Streams the tensors' pages in the background, in the given order (pass them in layer order), and maps
    /// them ahead so touching them does not fault.</summary>
    public void Prefetch(IEnumerable<Tensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        foreach (var t in tensors)
        {
            if (t.Length > 0)
            {
                Region.PrefetchRange(t.Info.Offset, t.Length);
            }
        }
    }

    /// <summary>Drops a tensor's pages (after uploading it to a GPU, say): the memory is freed and a later touch reads
    /// it again. Only pages wholly inside the tensor are dropped, so neighbours sharing a page are untouched.</summary>
    public void Release(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        long page = Region.PageSize;
        long first = (tensor.Info.Offset + page - 1) / page * page;
        long end = (tensor.Info.Offset + tensor.Length) / page * page;
        if (end > first)
        {
            Region.Discard(first, end - first);
        }
    }

    /// <summary>Unmaps the file.</summary>
    public void Dispose() => Region.Dispose();
}

/// <summary>A tensor of a <see cref="WeightsModel"/>: a view of its bytes in the region, no copy.</summary>
public sealed unsafe class Tensor
{
    private readonly WeightsModel _model;

    internal Tensor(WeightsModel model, TensorInfo info)
    {
        _model = model;
        Info = info;
    }

    /// <summary>What the header says.</summary>
    public TensorInfo Info { get; }

    /// <summary>The name.</summary>
    public string Name => Info.Name;

    /// <summary>The element type as the format spells it.</summary>
    public string DType => Info.DType;

    /// <summary>The shape, outermost first.</summary>
    public IReadOnlyList<long> Shape => Info.Shape;

    /// <summary>Bytes.</summary>
    public long Length => Info.Length;

    /// <summary>The first byte (valid while the model is open). The checkpoint is mapped read-only (except on
    /// hugetlbfs): a write through it is an access violation.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1720", Justification = "It is a pointer, named as MemoryHandle.Pointer is.")]
    public byte* Pointer => _model.Region.Pointer + Info.Offset;

    /// <summary>The bytes as a span (tensors up to 2 GiB; use <see cref="Pointer"/> beyond).</summary>
    public ReadOnlySpan<byte> Bytes => Length <= int.MaxValue
        ? new ReadOnlySpan<byte>(Pointer, (int)Length)
        : throw new InvalidOperationException($"tensor '{Name}' is {Length} bytes, more than a span holds; use Pointer");

    /// <summary>The elements as <typeparamref name="T"/> (e.g. Half for F16, float for F32; ushort for BF16).
    /// Throws when the byte length is not a whole number of <typeparamref name="T"/>. safetensors does not align
    /// tensors; unaligned element loads are fine on x86-64 and arm64.</summary>
    public ReadOnlySpan<T> AsSpan<T>() where T : unmanaged
    {
        if (Length % sizeof(T) != 0)
        {
            throw new InvalidOperationException($"tensor '{Name}' ({Length} bytes of {DType}) is not a whole number of {typeof(T).Name}");
        }
        if (Length / sizeof(T) > int.MaxValue)
        {
            throw new InvalidOperationException($"tensor '{Name}' has more elements than a span holds; use Pointer");
        }
        return new ReadOnlySpan<T>(Pointer, (int)(Length / sizeof(T)));
    }

    /// <inheritdoc />
    public override string ToString() => $"{Name}: {DType}[{string.Join(',', Info.Shape)}] ({Length} bytes)";
}
