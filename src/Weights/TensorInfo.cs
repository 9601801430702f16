using System.Collections.Immutable;

namespace Paging.Weights;

/// <summary>A checkpoint file is malformed; the message names the problem and where.</summary>
public sealed class WeightsFormatException : PagingException
{
    /// <summary>Creates the exception.</summary>
    public WeightsFormatException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>One tensor as the header describes it.</summary>
/// <param name="Name">The tensor's name.</param>
/// <param name="DType">The element type as the format spells it (safetensors "F16", "BF16"...; GGUF "F32", "Q4_K"...).</param>
/// <param name="Shape">The dimensions, outermost first (safetensors order; GGUF dims are reversed to match).</param>
/// <param name="Offset">Absolute file offset of the first byte.</param>
/// <param name="Length">Bytes.</param>
public sealed record TensorInfo(string Name, string DType, ImmutableArray<long> Shape, long Offset, long Length)
{
    /// <summary>Elements (the product of the shape; 1 for a 0-rank tensor).</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (long d in Shape)
            {
                n *= d;
            }
            return n;
        }
    }
}

/// <summary>What a header parse produced.</summary>
/// <param name="Format">"safetensors" or "gguf".</param>
/// <param name="Tensors">Tensors in file order.</param>
/// <param name="Metadata">String metadata (safetensors __metadata__; GGUF scalar and string key-values).</param>
/// <param name="DataStart">Absolute offset of the data section.</param>
public sealed record WeightsHeader(string Format, IReadOnlyList<TensorInfo> Tensors, IReadOnlyDictionary<string, string> Metadata, long DataStart);

/// <summary>Checks shared by both formats.</summary>
internal static class TensorChecks
{
    /// <summary>Tensors must lie inside [dataStart, fileLength) and must not overlap.</summary>
    public static void CheckLayout(List<TensorInfo> tensors, long dataStart, long fileLength, string format)
    {
        var byOffset = tensors.Where(t => t.Length > 0).OrderBy(t => t.Offset).ToList();
        for (int i = 0; i < byOffset.Count; i++)
        {
            var t = byOffset[i];
            if (t.Offset < dataStart || t.Offset + t.Length > fileLength)
            {
                throw new WeightsFormatException(
                    $"{format}: tensor '{t.Name}' spans [{t.Offset}, {t.Offset + t.Length}) but the data section is [{dataStart}, {fileLength}): the data is shorter than declared (truncated file?)");
            }
            if (i > 0 && byOffset[i - 1].Offset + byOffset[i - 1].Length > t.Offset)
            {
                throw new WeightsFormatException($"{format}: tensors '{byOffset[i - 1].Name}' and '{t.Name}' overlap");
            }
        }
    }

    public static long MultiplyChecked(long a, long b, string format, string name)
    {
        try
        {
            return checked(a * b);
        }
        catch (OverflowException)
        {
            throw new WeightsFormatException($"{format}: the dimensions of tensor '{name}' overflow 64 bits");
        }
    }
}
