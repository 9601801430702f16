using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Paging.Testing;

/// <summary>
/// Sums what the network stores record on their meter (<c>Paging.Backends.Network</c>) for one <c>store</c> tag
/// value, from its creation to its disposal. It sees every store of the process: tests running beside one another
/// add to the same sums, so assert lower bounds.
/// </summary>
public sealed class NetworkMeterRecorder : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<string, long> _sums = new();

    /// <summary>Starts listening for measurements tagged <c>store</c> = <paramref name="store"/>.</summary>
    public NetworkMeterRecorder(string store)
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == "Paging.Backends.Network")
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "store" && Equals(tag.Value, store))
                {
                    _sums.AddOrUpdate(instrument.Name, value, (_, sum) => sum + value);
                }
            }
        });
        _listener.Start();
    }

    /// <summary>The sum recorded on instrument <paramref name="name"/> (e.g. paging.network.retries), 0 if none.</summary>
    public long this[string name] => _sums.TryGetValue(name, out long sum) ? sum : 0;

    /// <inheritdoc />
    public void Dispose() => _listener.Dispose();
}
