
namespace Paging.Testing;

/// <summary>
/// Wraps a store and fails on purpose. Built by the pager as a custom store (assembly = this one), with settings:
/// <c>inner</c> ("zero" or "file" plus the file settings), <c>fail_offset</c> (reads touching this region offset
/// fail), <c>fail_times</c> (how many times, -1 = always; default -1), <c>error</c> (Io, Corrupt...).
/// Also usable directly in the contract suite.
/// </summary>
public sealed class FaultInjectingPageStore : DelegatingPageStore
{
    private readonly long _failOffset;
    private readonly PageStoreError _error;
    private int _failuresLeft;

    public FaultInjectingPageStore(PageStoreContext context)
        : this(BuiltInPageStores.CreateRegistry().Create(new PageStoreContext(
                new PageStoreDescriptor(context.Get("inner", "zero"), context.Settings), context.RegionLength, context.PageSize)),
            context.GetInt64("fail_offset", -1),
            (int)context.GetInt64("fail_times", -1, min: -1, max: int.MaxValue),
            Enum.Parse<PageStoreError>(context.Get("error", "Io")))
    {
    }

    public FaultInjectingPageStore(IPageStore inner, long failOffset, int failTimes, PageStoreError error) : base(inner)
    {
        _failOffset = failOffset;
        _failuresLeft = failTimes;
        _error = error;
    }

    public int Failures { get; private set; }

    public override PageReadStatus Read(long offset, Span<byte> destination)
    {
        if (_failOffset >= 0 && offset <= _failOffset && _failOffset < offset + destination.Length && _failuresLeft != 0)
        {
            if (_failuresLeft > 0)
            {
                _failuresLeft--;
            }
            Failures++;
            // Scribble first: a failed read must never leave bytes the runtime would map.
            destination.Fill(0xEE);
            throw new PageStoreException(_error, $"injected {_error} failure reading offset {offset}");
        }
        return Inner.Read(offset, destination);
    }
}
