"""busio.I2C's API over a device model's raw transactions, so that unmodified
CircuitPython drivers (adafruit_bus_device.I2CDevice) can drive a model under
CPython. The model provides writeto(addr, buf) and readfrom_into(addr, buf)
and raises OSError (NACK) for addresses it does not answer."""


class BusioI2C:
    def __init__(self, device):
        self._dev = device
        self._locked = False

    def try_lock(self):
        if self._locked:
            return False
        self._locked = True
        return True

    def unlock(self):
        self._locked = False

    def scan(self):
        found = []
        for addr in range(0x08, 0x78):
            try:
                self._dev.writeto(addr, b"")
            except OSError:
                continue
            found.append(addr)
        return found

    def writeto(self, address, buffer, *, start=0, end=None):
        self._dev.writeto(address, memoryview(buffer)[start:end])

    def readfrom_into(self, address, buffer, *, start=0, end=None):
        self._dev.readfrom_into(address, memoryview(buffer)[start:end])

    def writeto_then_readfrom(self, address, buffer_out, buffer_in, *, out_start=0,
                              out_end=None, in_start=0, in_end=None):
        # Drivers pass one shared buffer for both directions (adafruit_register's
        # _BUFFER): the outgoing bytes are copied before the read overwrites them.
        self._dev.writeto(address, bytes(buffer_out[out_start:out_end]))
        self._dev.readfrom_into(address, memoryview(buffer_in)[in_start:in_end])
