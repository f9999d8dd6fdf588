@_exported import PageStatCore
